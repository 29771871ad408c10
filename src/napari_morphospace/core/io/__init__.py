"""Reading microscopy stacks (axes, pixel sizes, channel names) and writing OME-TIFF."""
