"""The organelle study's fusion classifiers: models, cross-validation, metrics, channel evidence and what the
Classifier widget shows."""
