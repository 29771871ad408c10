"""From images to single-cell crops: pairing objects with images, preprocessing, cropping, crop sets on disk,
selections of cells, and the synthetic sample cells."""
