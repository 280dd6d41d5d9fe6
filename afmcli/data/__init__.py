"""Data: VisDrone format, COCO conversion, masks, slicing, synthetic data, transforms."""
