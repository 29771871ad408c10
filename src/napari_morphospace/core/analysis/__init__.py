"""From a model and crops to latents and numbers: embedding, 2D reductions and clusters, the per-cell table,
statistics and inference, traversals, difference maps, Grad-CAM, disentanglement, tracks, external tables."""
