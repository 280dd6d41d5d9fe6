"""Pictures: detections on images, plots."""
