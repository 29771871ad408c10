"""napari-morphospace: unsupervised analysis of cell morphology with variational autoencoders."""

__version__ = "0.1.0"
