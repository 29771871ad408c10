"""The embed and cluster row of the Scatter dock: 2D embeddings and clusters of every cell of the session.

They work on the session's latent table (a model's latent means μ, or
features measured elsewhere: the buttons say which) off the GUI thread, with
:func:`~napari_morphospace.core.analysis.cell_table.add_embedding_columns` and
:func:`~napari_morphospace.core.analysis.cell_table.add_cluster_column`, the
functions a script calls. The Scatter widget writes the new columns into the
session's per-cell table, hence into the layers' features and the saved
analysis, and shows them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
from qtpy.QtWidgets import QComboBox, QHBoxLayout, QPushButton, QSpinBox, QWidget

from ..core.analysis.cell_table import EMBEDDINGS, add_cluster_column, add_embedding_columns, mu_columns
from ..core.errors import InputError
from ..viewer.session import Session
from .errors import report_errors
from .tasks import Tasks

CLUSTERINGS = ("kmeans", "gmm", "hdbscan")


class ComputeRow(QWidget):
    """A 2D embedding and a clustering of the session's cells: method choices, their buttons, and the computations.

    ``on_embedded(table, axes)`` and ``on_clustered(table)`` get the latent
    table with the new columns, on the GUI thread, to write them into the
    session's per-cell table and show them.
    """

    def __init__(
        self,
        session: Session,
        tasks: Tasks,
        *,
        on_embedded: Callable[[pd.DataFrame, tuple[str, str]], None],
        on_clustered: Callable[[pd.DataFrame], None],
    ) -> None:
        super().__init__()
        self.session, self.tasks = session, tasks
        self._on_embedded, self._on_clustered = on_embedded, on_clustered
        self.embed_combo = QComboBox()
        self.embed_combo.addItems(list(EMBEDDINGS))
        self.embed_button = QPushButton()
        self.cluster_combo = QComboBox()
        self.cluster_combo.addItems(list(CLUSTERINGS))
        self.cluster_spin = QSpinBox(minimum=1, maximum=100, value=3)
        self.cluster_button = QPushButton()
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        for item in (self.embed_combo, self.embed_button, self.cluster_combo, self.cluster_spin, self.cluster_button):
            row.addWidget(item)
        self.embed_button.clicked.connect(lambda: self.compute_embedding(self.embed_combo.currentText()))
        self.cluster_button.clicked.connect(
            lambda: self.compute_clusters(self.cluster_combo.currentText(), self.cluster_spin.value())
        )
        session.latents_changed.connect(self.describe)
        self.describe()

    def describe(self, _latents: Any = None) -> None:
        """Name what the buttons work on: a model's latent means μ, or the features of a table measured elsewhere."""
        latents = self.session.latents
        if latents is not None and not mu_columns(latents):
            embed, embed_tip = "Embed features", "2D embedding of every cell of the session by its measured features"
            cluster, cluster_tip = "Cluster features", "Cluster every cell of the session by its measured features"
        else:
            embed, embed_tip = "Embed μ", "2D embedding of every embedded cell of the session (its latent means μ)"
            cluster, cluster_tip = "Cluster μ", "Cluster every embedded cell of the session by its latent means μ"
        self.embed_button.setText(embed)
        self.embed_button.setToolTip(f"{embed_tip}, written to the per-cell table")
        self.cluster_button.setText(cluster)
        self.cluster_button.setToolTip(f"{cluster_tip}; the cluster ids go to the per-cell table")

    def _session_latents(self) -> pd.DataFrame:
        """The session's cells that have a latent: 2D embeddings and clusters are computed on all of them."""
        latents = self.session.latents
        if latents is None:
            raise InputError(
                "there are no latents in this session: "
                "embed the crops with the Embed widget (or open an analysis) first"
            )
        return latents

    @report_errors
    def compute_embedding(self, method: str = "PCA", seed: int = 0) -> Any:
        """Embed the session's latents in 2D (PCA, UMAP or TSNE) off the GUI thread: columns ``{method}_0/1``.

        Returns the started worker (or None when the input was refused).
        """
        if method not in EMBEDDINGS:
            raise InputError(f"unknown embedding {method!r}; choose one of {', '.join(EMBEDDINGS)}")
        axes = (f"{method}_0", f"{method}_1")
        return self.tasks.start(
            add_embedding_columns,
            self._session_latents(),
            method,
            seed=seed,
            on_done=lambda table: self._on_embedded(table, axes),
            action=f"The {method} embedding",
            exclusive=False,
        )

    @report_errors
    def compute_clusters(self, method: str = "kmeans", n_clusters: int = 3, seed: int = 0) -> Any:
        """Cluster the session's latents off the GUI thread: column ``cluster``.

        Returns the started worker (or None when the input was refused).
        """
        return self.tasks.start(
            add_cluster_column,
            self._session_latents(),
            method,
            n_clusters=n_clusters,
            seed=seed,
            on_done=self._on_clustered,
            action="Clustering",
            exclusive=False,
        )
