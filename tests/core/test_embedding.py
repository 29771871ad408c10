"""Embeddings and clustering: shapes, determinism, recovery of known blobs, clear errors."""

import sys

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from napari_morphospace.core.analysis.reduce import cluster, pca, tsne, umap
from napari_morphospace.core.errors import InputError


@pytest.fixture(scope="module")
def blobs():
    return make_blobs(n_samples=300, n_features=8, centers=3, cluster_std=0.5, random_state=0)


@pytest.mark.parametrize("method", ["kmeans", "gmm", "hdbscan"])
def test_cluster_recovers_separated_blobs(blobs, method):
    x, truth = blobs
    labels = cluster(x, method=method, n_clusters=3, seed=0)
    assert labels.shape == (300,)
    assert adjusted_rand_score(truth, labels) > 0.95
    assert np.array_equal(labels, cluster(x, method=method, n_clusters=3, seed=0))


def test_pca_keeps_the_direction_of_largest_variance():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 3)) * [10.0, 1.0, 0.1]
    projected = pca(x, n=2)
    assert projected.shape == (500, 2) and projected.dtype == np.float32
    assert abs(np.corrcoef(projected[:, 0], x[:, 0])[0, 1]) > 0.99


def test_tsne_is_deterministic_and_separates_blobs(blobs):
    x, truth = blobs
    first = tsne(x[:150], seed=1)
    assert np.array_equal(first, tsne(x[:150], seed=1))
    assert adjusted_rand_score(truth[:150], cluster(first, n_clusters=3)) > 0.95


def test_umap_missing_says_how_to_install(blobs, monkeypatch):
    monkeypatch.setitem(sys.modules, "umap", None)  # makes `import umap` fail
    with pytest.raises(InputError, match=r"napari-morphospace\[umap\]"):
        umap(blobs[0])


def test_bad_input_is_refused(blobs):
    x = blobs[0].copy()
    x[3, 2] = np.nan
    with pytest.raises(InputError, match="1 of 300 rows"):
        pca(x)
    with pytest.raises(InputError, match="unknown clustering method"):
        cluster(blobs[0], method="spectral")
