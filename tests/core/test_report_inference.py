"""The report's inference section: per image when each condition has enough images, else per cell saying why."""

import re

import numpy as np
import pandas as pd

from napari_morphospace.core.analysis.inference import simulate_conditions
from napari_morphospace.core.project.analysis_folder import (
    create_analysis,
    save_analysis,
)
from napari_morphospace.core.project.report import write_report

TITLE = "Inference between the groups"


def _section(folder, images: int) -> str:
    rng = np.random.default_rng(0)
    a, b, images_a, images_b = simulate_conditions(rng, images=images, cells_per_image=20, dims=3, shift=[0.0, 1.5])
    latents = pd.DataFrame(np.concatenate([b, a]), columns=["mu_0", "mu_1", "mu_2"])
    latents.insert(0, "crop_id", np.arange(len(latents)))
    latents["group"] = ["control"] * len(b) + ["treated"] * len(a)  # control first: the report tests treated vs control
    latents["source"] = np.concatenate([images_b, images_a])
    save_analysis(create_analysis(folder), latents=latents)
    text = write_report(folder, folder / "report.html").read_text()
    return re.search(rf"<h2>{TITLE}</h2>(.*?)</section>", text, flags=re.S).group(1)


def test_report_tests_per_image_and_lists_the_shifted_dimension_first(tmp_path):
    body = _section(tmp_path / "a", images=5)
    assert "per image: 5 vs 5 images (100 vs 100 cells)" in body and "252 all relabellings of the images" in body
    rows = re.findall(r"<tr><td>(mu_\d)</td><td>([-+0-9.e]+)</td>.*?<td>(yes|)</td></tr>", body)
    assert rows[0][0] == "mu_1" and float(rows[0][1]) > 1.0 and rows[0][2] == "yes"
    assert "Whole latent space: energy distance" in body


def test_report_with_one_image_per_condition_tests_cells_and_says_why(tmp_path):
    body = _section(tmp_path / "a", images=1)
    assert "Not tested per image: &#x27;treated&#x27; has 1 image(s)" in body
    assert "per cell: 20 vs 20 cells" in body
    assert "one image each: a difference between the conditions cannot be told apart" in body
