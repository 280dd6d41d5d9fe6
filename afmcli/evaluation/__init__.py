"""Evaluation: the official VisDrone toolkit numbers and the COCO view."""
