"""The Statistics panel's computation without Qt: known effect, left-out rows, figure export."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from napari_morphospace.core.analysis.latent_summary import (
    default_groups,
    ranked_dimensions,
    summarise_latents,
    top_dimensions,
)
from napari_morphospace.core.errors import InputError
from napari_morphospace.core.figures.statistics import summary_figures
from napari_morphospace.core.project.export import export_figures


def table(n=30):
    rng = np.random.default_rng(1)
    mu = rng.standard_normal((2 * n, 3))
    mu[:n, 1] += 3.0
    out = pd.DataFrame(mu, columns=["mu_0", "mu_1", "mu_2"]).assign(group=["a"] * n + ["b"] * n)
    return out


def test_group_a_higher_gives_positive_d_ranked_first_and_unembedded_rows_left_out():
    data = pd.concat([table(), pd.DataFrame({"mu_0": [np.nan], "mu_1": [np.nan], "mu_2": [np.nan], "group": ["a"]})])
    summary = summarise_latents(data, "group", "a", "b")
    a, b = data["mu_1"][:30], data["mu_1"][30:60]
    pooled = np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)  # equal group sizes
    assert summary.ranking[0] == 1 and summary.effects.d[1] == pytest.approx((a.mean() - b.mean()) / pooled)
    assert summary.n_cells == 60 and "1 object(s) without latents left out" in summary.overview_text()
    assert summary.kl is None and summary.probe["auroc"] > 0.95
    figures = summary_figures(summary, top=2)
    assert isinstance(figures["forest"], Figure) and isinstance(figures["kl"], str)


def test_same_group_twice_is_refused():
    with pytest.raises(InputError, match="choose two different groups"):
        summarise_latents(table(), "group", "a", "a")


def test_export_refuses_to_overwrite_before_writing_anything(tmp_path):
    data = table()
    figures = summary_figures(summarise_latents(data, "group", "a", "b"))
    (tmp_path / "kde.svg").write_text("mine")
    with pytest.raises(InputError, match="kde.svg already exist"):
        export_figures(figures, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kde.svg"]
    paths = export_figures(figures, tmp_path, overwrite=True)
    assert len(paths) == 6 and (tmp_path / "kde.svg").read_text() != "mine"  # kl is a message, not a figure


def test_one_sign_convention_condition_minus_reference_hand_computed():
    """d = (mean of the condition − mean of the reference) / pooled SD;
    by default the second group against the first."""
    data = pd.DataFrame({"mu_0": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "group": ["control"] * 3 + ["treated"] * 3})
    # control mean 1, treated mean 4, both variances 1 (ddof 1): pooled SD 1, d = (4 - 1) / 1 = +3
    assert default_groups(data, "group") == ("treated", "control")
    for summary in (summarise_latents(data), summarise_latents(data, "group", "treated", "control")):
        assert (summary.condition, summary.reference) == ("treated", "control")
        assert summary.effects.d[0] == pytest.approx(3.0)
        assert "d > 0: higher in 'treated'" in summary.effect_text()
    assert summarise_latents(data, "group", "control", "treated").effects.d[0] == pytest.approx(-3.0)


def test_one_group_ranks_by_kl_and_has_no_effect_sizes():
    data = table().assign(group="a", logvar_0=0.0, logvar_1=0.0, logvar_2=0.0)
    summary = summarise_latents(data)
    assert summary.condition is None and summary.effects is None and summary.ranked_by == "KL to the prior"
    assert summary.ranking[0] == 1  # KL = mean(μ²)/2 here: mu_1, shifted by 3 in half the cells, is largest
    with pytest.raises(InputError, match="one group"):
        summary.require_two_groups()


def kl_table() -> pd.DataFrame:
    """Three dimensions with hand-computed KL: logvar 0 everywhere, so KL_k = 0.5·mean(mu_k²)."""
    return pd.DataFrame(
        {
            "crop_id": [0, 1, 2, 3],
            "mu_0": [0.0, 0.0, 0.0, 0.0],  # KL 0
            "mu_1": [2.0, -2.0, 2.0, -2.0],  # KL 2
            "mu_2": [1.0, -1.0, 1.0, -1.0],  # KL 0.5
            "logvar_0": 0.0,
            "logvar_1": 0.0,
            "logvar_2": 0.0,
            "source": ["a", "a", "b", "b"],
            "label_id": [1, 2, 1, 2],
            "t": [0, 0, 0, 1],
            "group": ["ctrl", "ctrl", "drug", "drug"],
        }
    )


def test_dimensions_ranked_by_kl_match_the_hand_computed_values():
    order, kl = ranked_dimensions(kl_table(), by="kl")
    np.testing.assert_allclose(kl, [0.0, 2.0, 0.5])
    assert order.tolist() == [1, 2, 0]
    assert top_dimensions(kl_table(), 2, by="kl").tolist() == [1, 2]
    assert top_dimensions(kl_table(), None, by="kl").tolist() == [1, 2, 0]


def test_dimensions_ranked_by_cohens_d_between_two_groups():
    table = pd.DataFrame(
        {
            "mu_0": [0.0, 1.0, 0.0, 1.0],  # same in both groups: d = 0
            "mu_1": [0.0, 1.0, 3.0, 4.0],  # shifted by 3 with pooled SD 0.707: |d| = 4.24
            "group": ["ctrl", "ctrl", "drug", "drug"],
        }
    )
    order, d = ranked_dimensions(table, by="cohens_d", groups=("ctrl", "drug"))
    assert order.tolist() == [1, 0]
    np.testing.assert_allclose(d, [0.0, -3.0 / np.sqrt(0.5)])
    with pytest.raises(InputError, match="logvar"):
        ranked_dimensions(table, by="kl")
    with pytest.raises(InputError, match="two groups"):
        ranked_dimensions(table, by="cohens_d", groups=("ctrl",))
