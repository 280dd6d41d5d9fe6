"""Sliced inference (tiles + full image) and the fusion of detection sources."""
