"""Low-dimensional embeddings (PCA, UMAP, t-SNE) and clustering of latent vectors.

Thin, seeded wrappers around scikit-learn (and umap-learn when installed) so
that the same call gives the same plot on every run, and bad input gets a
message the user can act on instead of a library traceback.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from sklearn.cluster import HDBSCAN, KMeans
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.mixture import GaussianMixture

from ..errors import InputError
from .statistics import require_finite

ClusterMethod = Literal["kmeans", "gmm", "hdbscan"]


def _check_latents(latents: np.ndarray, n: int) -> np.ndarray:
    x = np.asarray(latents, dtype=float)
    if x.ndim != 2:
        raise InputError(f"latents must be a (cells, dimensions) array, got shape {x.shape}")
    require_finite(x, what="latents")
    if len(x) <= n:
        raise InputError(f"{len(x)} cells are too few for a {n}-dimensional embedding; use more cells")
    return x


def pca(latents: np.ndarray, n: int = 2, seed: int = 0) -> np.ndarray:
    """Project the latents on their first ``n`` principal components, shape (cells, n), float32."""
    x = _check_latents(latents, n)
    if n > x.shape[1]:
        raise InputError(f"cannot take {n} principal components of {x.shape[1]}-dimensional latents")
    return PCA(n_components=n, random_state=seed).fit_transform(x).astype(np.float32)


def umap(latents: np.ndarray, n: int = 2, seed: int = 0) -> np.ndarray:
    """UMAP embedding (umap-learn, optional dependency), shape (cells, n), float32.

    A fixed ``random_state`` makes UMAP deterministic (it then runs single-threaded).
    """
    x = _check_latents(latents, n)
    try:
        import umap as umap_learn
    except ImportError as err:
        raise InputError(
            "UMAP needs the optional package umap-learn: install napari-morphospace[umap] "
            "(pip install 'napari-morphospace[umap]'), or use PCA or t-SNE"
        ) from err
    reducer = umap_learn.UMAP(n_components=n, random_state=seed, n_neighbors=min(15, len(x) - 1))
    return np.asarray(reducer.fit_transform(x), dtype=np.float32)


def tsne(latents: np.ndarray, n: int = 2, seed: int = 0) -> np.ndarray:
    """t-SNE embedding (scikit-learn, PCA initialisation), shape (cells, n), float32."""
    x = _check_latents(latents, n)
    perplexity = min(30.0, (len(x) - 1) / 3)
    model = TSNE(n_components=n, random_state=seed, init="pca", perplexity=perplexity)
    return model.fit_transform(x).astype(np.float32)


def cluster(
    latents: np.ndarray, method: ClusterMethod = "kmeans", n_clusters: int = 3, seed: int = 0, min_cluster_size: int = 5
) -> np.ndarray:
    """Cluster ids per cell, int array of shape (cells,).

    ``kmeans`` and ``gmm`` find ``n_clusters`` groups; ``hdbscan`` chooses the
    number itself from ``min_cluster_size`` and marks noise as -1.
    """
    x = _check_latents(latents, 1)
    if method in ("kmeans", "gmm") and not 1 <= n_clusters <= len(x):
        raise InputError(f"n_clusters must be between 1 and the number of cells ({len(x)}), got {n_clusters}")
    if method == "kmeans":
        labels = KMeans(n_clusters=n_clusters, random_state=seed, n_init=10).fit_predict(x)
    elif method == "gmm":
        labels = GaussianMixture(n_components=n_clusters, random_state=seed).fit_predict(x)
    elif method == "hdbscan":
        labels = HDBSCAN(min_cluster_size=min_cluster_size).fit_predict(x)
    else:
        raise InputError(f"unknown clustering method {method!r}; choose kmeans, gmm or hdbscan")
    return np.asarray(labels, dtype=np.int64)


__all__ = ["ClusterMethod", "pca", "umap", "tsne", "cluster"]
