"""Fusion classifier on synthetic crops whose classes differ in one channel only."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from napari_morphospace.core.classifier.fusion import (
    ClassifierSettings,
    FusionClassifier,
    channel_evidence,
    channel_gradcam,
    classification_metrics,
    rank_channels,
    train_classifier,
)
from napari_morphospace.core.config import from_dict, to_dict
from napari_morphospace.core.errors import InputError


def _blob(size: int, centre: np.ndarray, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * radius**2))


def synthetic_crops(n_sources: int = 12, per_source: int = 8, size: int = 16, seed: int = 0):
    """Two channels of noisy blobs; class 1 crops have a bright blob in channel 1 where class 0 has a dim one.

    Each source image holds one class (as one condition per image in the
    organelle study), so crops of a source must stay in one fold.
    """
    rng = np.random.default_rng(seed)
    images, labels, groups = [], [], []
    for source in range(n_sources):
        label = source % 2
        for _ in range(per_source):
            crop = 0.15 * rng.random((2, size, size))
            crop[0] += 0.6 * _blob(size, rng.uniform(4, size - 4, 2), 2.0)
            crop[1] += (0.7 if label == 1 else 0.2) * _blob(size, rng.uniform(4, size - 4, 2), 2.0)
            images.append(np.clip(crop, 0, 1))
            labels.append(["control", "treated"][label])
            groups.append(f"image_{source}.tif")
    return np.asarray(images, dtype=np.float32), np.asarray(labels), np.asarray(groups)


FAST = ClassifierSettings(epochs=15, batch_size=16, learning_rate=1e-2, folds=3, base_channels=6, depth=2)


@pytest.mark.parametrize("fusion", ["early", "intermediate", "late"])
@pytest.mark.parametrize("shape", [(3, 2, 12, 14), (3, 2, 6, 8, 10)])
def test_fusion_network_shapes_2d_and_3d(fusion, shape):
    model = FusionClassifier(2, 3, len(shape) - 2, fusion=fusion, base_channels=4, depth=3)
    assert model(torch.rand(shape)).shape == (3, 3)
    if fusion == "early":  # one network sees both channels from its first convolution
        assert model.encoder[0][0].in_channels == 2 and not hasattr(model, "channel_encoders")
    else:  # one encoder per channel, each taking its channel alone
        assert [encoder[0][0].in_channels for encoder in model.channel_encoders] == [1, 1]
        assert len(model.channel_encoders[1]) == 3
    if fusion == "intermediate":  # the two channels' features are concatenated before one head
        assert model.head.in_features == 2 * 16
    if fusion == "late":  # one classifier head per channel, equal weights to start with
        assert [head.in_features for head in model.channel_heads] == [16, 16]
        np.testing.assert_allclose(model.channel_weights(), [0.5, 0.5])


def test_late_fusion_is_the_weighted_mean_of_the_channel_classifiers_probabilities():
    torch.manual_seed(0)
    model = FusionClassifier(3, 2, 2, fusion="late", base_channels=4, depth=2).eval()
    with torch.no_grad():
        model.weight_logits.copy_(torch.log(torch.tensor([0.2, 0.3, 0.5])))
    x = torch.rand(5, 3, 8, 8)
    with torch.no_grad():
        per_channel = torch.softmax(model.channel_logits(x), dim=2).numpy()  # (N, C, classes)
        fused = torch.softmax(model(x), dim=1).numpy()
    np.testing.assert_allclose(model.channel_weights(), [0.2, 0.3, 0.5], rtol=1e-6)
    expected = 0.2 * per_channel[:, 0] + 0.3 * per_channel[:, 1] + 0.5 * per_channel[:, 2]
    np.testing.assert_allclose(fused, expected, rtol=1e-5)
    assert FusionClassifier(3, 2, 2, fusion="intermediate").channel_weights() is None


@pytest.mark.parametrize("fusion", ["early", "intermediate", "late"])
def test_classifier_separates_groups_that_differ_in_one_channel_without_source_leakage(fusion):
    images, labels, groups = synthetic_crops()
    updates = []
    settings = ClassifierSettings(**{**to_dict(FAST), "fusion": fusion})
    result = train_classifier(images, labels, groups, settings, on_update=updates.append)
    assert list(result.classes) == ["control", "treated"]
    assert result.pooled.balanced_accuracy > 0.9
    assert result.pooled.auroc > 0.9 and result.pooled.confusion.sum() == len(labels)
    assert len(result.folds) == 3 and not result.stopped and result.model is not None
    for source in np.unique(groups):  # every crop of a source is tested in the same fold
        assert np.unique(result.fold_of[groups == source]).size == 1
    assert [u.fold for u in updates].count(None) == FAST.epochs  # final model on all data reported its epochs

    treated = images[labels == "treated"]
    if fusion == "early":  # one encoder for both channels: no per-channel Grad-CAM
        with pytest.raises(InputError, match="early fusion has one encoder for all channels"):
            channel_gradcam(result.model, treated, 1)
        return
    maps = channel_gradcam(result.model, treated, 1)
    assert maps.shape == (2, len(treated), 16, 16) and maps.max() == pytest.approx(1.0)
    evidence = channel_evidence(result.model, images, labels, result.classes)
    assert evidence[1, 1] > 0.9  # channel 1 drives "treated"
    np.testing.assert_allclose(evidence.sum(axis=1)[evidence.sum(axis=1) > 0], 1.0)
    if fusion == "late":  # the learned weights trust the informative channel's classifier more
        weights = result.model.channel_weights()
        assert weights[1] > 0.6 and weights.sum() == pytest.approx(1.0)


def test_rank_channels_puts_the_informative_channel_first():
    images, labels, groups = synthetic_crops(seed=1)
    ranking = rank_channels(images, labels, groups, FAST, channel_names=["ER", "mito"])
    assert [r.name for r in ranking] == ["mito", "ER"]
    assert ranking[0].metrics.balanced_accuracy > 0.9
    assert ranking[1].metrics.balanced_accuracy < 0.75


def test_stop_event_ends_training_within_a_step():
    images, labels, groups = synthetic_crops(n_sources=6, per_source=4)
    stop = threading.Event()
    seen = []

    def stop_after_first_epoch(update):
        seen.append(update)
        stop.set()

    result = train_classifier(images, labels, groups, FAST, stop_event=stop, on_update=stop_after_first_epoch)
    assert result.stopped and result.model is None and result.folds == [] and result.pooled is None
    assert len(seen) == 1


def test_metrics_known_values():
    y = np.array([0, 0, 1, 1])
    probabilities = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.2, 0.8]])
    metrics = classification_metrics(y, probabilities)
    assert metrics.balanced_accuracy == pytest.approx(0.75)
    np.testing.assert_array_equal(metrics.confusion, [[1, 1], [0, 2]])
    assert metrics.auroc == pytest.approx(1.0)  # the ranking is perfect even if one threshold is wrong
    assert metrics.mcc == pytest.approx(1 / np.sqrt(3))
    three = classification_metrics(np.array([0, 1, 2]), np.eye(3))
    assert three.auroc == pytest.approx(1.0) and three.macro_f1 == pytest.approx(1.0)


def test_bad_settings_and_inputs_are_refused():
    with pytest.raises(InputError, match="fusion"):
        from_dict(ClassifierSettings, {"fusion": "middle"})
    with pytest.raises(InputError, match="fusion must be one of 'early', 'intermediate', 'late'"):
        FusionClassifier(2, 2, 2, fusion="middle")
    with pytest.raises(InputError, match="folds must be at least 2"):
        ClassifierSettings(folds=1)
    images, labels, groups = synthetic_crops(n_sources=2, per_source=2)
    with pytest.raises(InputError, match="at least 3 source images"):
        train_classifier(images, labels, groups, FAST)
    with pytest.raises(InputError, match="at least 2 classes"):
        train_classifier(images, np.zeros(len(images)), groups, FAST)
