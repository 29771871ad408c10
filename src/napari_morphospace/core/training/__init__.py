"""From crops to a trained model: the Lightning training engine, checkpoints, model bundles and the
diagnostics of a finished training."""
