"""Evaluation metrics against hand-computed cases (jodi/eval/)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from jodi.eval.depth import DepthEvalConfig, depth_metrics, fit_scale_shift, summarize_depth
from jodi.eval.edge import EdgeEvalConfig, edge_counts, match_count, summarize_edge
from jodi.eval.generation import Fid, condition_consistency
from jodi.eval.image import Lpips, psnr, ssim, summarize_image
from jodi.eval.metrics import MetricsConfig, score, summarize
from jodi.eval.normal import angular_error_deg, normal_stats, summarize_normal
from jodi.eval.seg import confusion, summarize_seg
from schemas.encoding import encode_depth, encode_seg

RAW = DepthEvalConfig(pred_kind="depth", gt_kind="depth", align_space="depth", align=False)


# ---------------------------------------------------------------- depth


def test_depth_hand_computed_without_alignment():
    gt, pred = np.array([[1.0, 2.0, 4.0]]), np.array([[1.0, 2.0, 2.0]])
    m = depth_metrics(pred, gt, cfg=RAW)
    # |2-4|/4 = 0.5 on one pixel of three; ratios 1, 1, 2 (2 > 1.25^3 = 1.953); squared errors 0, 0, 4
    assert m["abs_rel"] == pytest.approx(0.5 / 3)
    assert (m["delta1"], m["delta2"], m["delta3"]) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    assert m["rmse"] == pytest.approx(math.sqrt(4 / 3))


def test_depth_scale_shift_alignment_in_each_space():
    rng = np.random.default_rng(0)
    depth = rng.uniform(1.0, 10.0, (8, 8))
    assert fit_scale_shift(np.array([0.0, 1.0, 2.0]), np.array([1.0, 3.0, 5.0])) == pytest.approx((2.0, 1.0))
    # an affine function of depth is perfect after depth-space alignment ...
    m = depth_metrics(3 * depth + 2, depth, cfg=DepthEvalConfig("depth", "depth", "depth"))
    assert m["abs_rel"] == pytest.approx(0, abs=1e-9) and m["delta1"] == 1.0
    # ... and an affine function of disparity is perfect after disparity-space alignment
    disparity_pred = 0.5 / depth + 0.1
    m = depth_metrics(disparity_pred, depth, cfg=DepthEvalConfig("disparity", "depth", "disparity"))
    assert m["abs_rel"] == pytest.approx(0, abs=1e-9) and m["rmse"] == pytest.approx(0, abs=1e-9)
    # but not after depth-space alignment, where 1/x is not affine
    m = depth_metrics(disparity_pred, depth, cfg=DepthEvalConfig("disparity", "depth", "depth"))
    assert m["abs_rel"] > 0.01


def test_depth_valid_mask_and_per_image_mean():
    gt = np.array([[1.0, 2.0, 0.0, np.nan]])  # 0 and nan are invalid ground truth
    pred = np.array([[1.0, 4.0, 9.0, 9.0]])
    m = depth_metrics(pred, gt, cfg=RAW)
    assert m["abs_rel"] == pytest.approx(0.5)  # (0 + 1) / 2 valid pixels
    m = depth_metrics(pred, gt, mask=np.array([[True, False, True, True]]), cfg=RAW)
    assert m == {}  # fewer than 2 valid pixels
    s = summarize_depth([{"abs_rel": 0.1, "delta1": 1.0}, {"abs_rel": 0.3, "delta1": 0.5}, {}])
    assert s == pytest.approx({"abs_rel": 0.2, "delta1": 0.75, "images": 2})


def test_joint_depth_labels_score_through_the_encoding():
    rng = np.random.default_rng(1)
    disparity = rng.uniform(0.2, 1.0, (16, 16))
    stored = encode_depth(disparity)  # min-max to 0..255, near bright
    stats = score("depth", stored, stored)
    assert stats["abs_rel"] == pytest.approx(0, abs=1e-9) and stats["delta1"] == 1.0
    worse = score("depth", encode_depth(disparity[::-1]), stored)
    assert worse["abs_rel"] > 0.1


# ---------------------------------------------------------------- normal


def test_normal_angles_and_thresholds():
    z, x = np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0])
    tilt = np.array([0.0, np.sin(np.radians(20)), np.cos(np.radians(20))])
    pred = np.stack([z, x, tilt, 2 * z])[None]  # errors 0, 90, 20, 0 (length does not matter)
    gt = np.stack([z, z, z, z])[None]
    np.testing.assert_allclose(angular_error_deg(pred, gt)[0], [0, 90, 20, 0], atol=1e-9)
    s = summarize_normal([normal_stats(pred, gt)])
    assert s["mean"] == pytest.approx(27.5)
    assert s["median"] == pytest.approx(np.median([0, 90, 20, 0]), abs=0.01)
    assert s["within_11.25"] == pytest.approx(50.0) and s["within_22.5"] == pytest.approx(75.0)
    assert s["within_30"] == pytest.approx(75.0) and s["pixels"] == 4


def test_normal_stats_merge_over_images():
    z = np.array([0.0, 0.0, 1.0])
    a = normal_stats(np.tile(z, (1, 3, 1)), np.tile(z, (1, 3, 1)))
    tilt = np.array([0.0, np.sin(np.radians(40)), np.cos(np.radians(40))])
    b = normal_stats(np.tile(tilt, (1, 2, 1)), np.tile(z, (1, 2, 1)))
    s = summarize_normal([a, b])
    assert s["mean"] == pytest.approx(16.0) and s["median"] == pytest.approx(0.0) and s["pixels"] == 5


# ---------------------------------------------------------------- edge


def _line(h=40, w=40, row=20, cols=slice(5, 35)):
    a = np.zeros((h, w))
    a[row, cols] = 1.0
    return a


def test_edge_matching_is_one_to_one_within_the_tolerance():
    gt = _line()
    assert match_count(gt > 0, gt > 0, 1.0) == 30
    assert match_count(_line(row=21) > 0, gt > 0, 1.0) == 30  # one pixel off, tolerance 1 px
    assert match_count(_line(row=23) > 0, gt > 0, 1.0) == 0  # three pixels off
    two = np.zeros_like(gt)
    two[19, 5:35] = two[21, 5:35] = 1  # a doubled line still matches each gt pixel once
    assert match_count(two > 0, gt > 0, 1.0) == 30


def test_edge_ods_ois_ap_hand_computed():
    cfg = EdgeEvalConfig(thresholds=3, max_dist=1.0 / np.hypot(40, 40), thin=False, matching="exact")  # 1 px
    gt = _line()
    half = _line(cols=slice(5, 20))  # 15 of 30 gt pixels, all correct -> P 1, R 0.5, F 2/3
    s = summarize_edge([edge_counts(gt, gt, cfg)], cfg)
    assert s["ods"] == pytest.approx(1.0) and s["ois"] == pytest.approx(1.0) and s["ap"] == pytest.approx(1.0)
    s = summarize_edge([edge_counts(half, gt, cfg)], cfg)
    assert s["ods"] == pytest.approx(2 / 3) and s["ap"] == pytest.approx(0.5)
    # soft map: 0.4 on the missing half; thresholds 0.25/0.5/0.75 -> best at 0.25 (full line)
    soft = half + 0.4 * _line(cols=slice(20, 35))
    s2 = summarize_edge([edge_counts(soft, gt, cfg)], cfg)
    assert s2["ods"] == pytest.approx(1.0) and s2["ods_threshold"] == pytest.approx(0.25)
    # two images whose best thresholds differ: OIS (per image) >= ODS (one threshold)
    other = 0.6 * _line()  # full line only up to threshold 0.5
    ods = summarize_edge([edge_counts(soft, gt, cfg), edge_counts(other, gt, cfg)], cfg)
    assert ods["ois"] >= ods["ods"] - 1e-12 and ods["ods"] == pytest.approx(1.0)


def test_edge_distance_matching_agrees_with_exact_matching_on_single_lines():
    tol = 1.5 / np.hypot(40, 40)  # 1.5 px
    gt = _line() + _line(row=30, cols=slice(2, 20))
    soft = 0.9 * _line(row=21) + 0.3 * _line(row=10) + 0.6 * _line(row=31, cols=slice(2, 20))  # same extents
    fast = edge_counts(soft, gt, EdgeEvalConfig(thresholds=5, thin=False, max_dist=tol))
    exact = edge_counts(soft, gt, EdgeEvalConfig(thresholds=5, thin=False, max_dist=tol, matching="exact"))
    np.testing.assert_array_equal(fast, exact)
    doubled = _line(row=19) + _line(row=21)  # one-to-one: half the predicted pixels are unmatched
    cfg = EdgeEvalConfig(thresholds=1, thin=False, max_dist=tol)
    fast = edge_counts(doubled, _line(), cfg)[0]
    exact = edge_counts(doubled, _line(), EdgeEvalConfig(thresholds=1, thin=False, max_dist=tol, matching="exact"))[0]
    assert tuple(exact) == (30, 30, 30, 60) and tuple(fast) == (30, 30, 60, 60)


def test_edge_thinning_and_shape_checks():
    thick = np.zeros((40, 40))
    thick[19:22, 5:35] = 1.0  # a 3-px band thins to about one line: precision stays high
    counts = edge_counts(thick, _line(), EdgeEvalConfig(thresholds=1))
    matched, n_gt, _, n_pred = counts[0]
    assert matched >= 28 and n_pred <= 34 and n_gt == 30
    with pytest.raises(ValueError, match="differ in shape"):
        edge_counts(thick, thick[:10])


# ---------------------------------------------------------------- segmentation


def test_seg_confusion_and_miou_exclude_others():
    gt = np.array([[0, 1, 1, 2]])
    pred = np.array([[1, 1, 2, 2]])
    cm = confusion(pred, gt)
    assert cm.sum() == 4 and cm[1, 1] == 1 and cm[1, 2] == 1 and cm[0, 1] == 1 and cm[2, 2] == 1
    s = summarize_seg([cm])
    # person: tp 1, union (2 gt + 2 pred - 1) = 3 -> 1/3; animal: tp 1, union 1 + 2 - 1 = 2 -> 1/2
    assert s["iou"]["person"] == pytest.approx(100 / 3) and s["iou"]["animal"] == pytest.approx(50.0)
    assert s["iou"]["others"] == pytest.approx(0.0) and s["iou"]["sky"] is None
    assert s["miou"] == pytest.approx(100 * (1 / 3 + 1 / 2) / 2) and s["classes_scored"] == 2
    # dataset-level: the confusion matrices add, IoU is not a mean of per-image IoUs
    s2 = summarize_seg([cm, confusion(np.array([[1, 1]]), np.array([[1, 1]]))])
    assert s2["iou"]["person"] == pytest.approx(100 * 3 / 5)


def test_seg_scores_palette_pictures():
    ids = np.array([[1, 6], [6, 7]])
    s = summarize("seg_12colors", [score("seg_12colors", encode_seg(ids), encode_seg(ids))])
    assert s["miou"] == pytest.approx(100.0) and s["pixel_acc"] == pytest.approx(100.0)


# ---------------------------------------------------------------- pictures and generation


def test_psnr_ssim_hand_computed():
    a = np.zeros((16, 16, 3), np.uint8)
    b = np.full((16, 16, 3), 51, np.uint8)  # 0.2 everywhere: MSE 0.04 -> PSNR 10 log10(1/0.04) = 13.98 dB
    assert psnr(a, b) == pytest.approx(10 * math.log10(1 / 0.04), rel=1e-5)
    assert math.isinf(psnr(a, a)) and ssim(a, a) == pytest.approx(1.0)
    assert ssim(b, np.clip(b.astype(int) + np.indices((16, 16))[0][..., None] * 8, 0, 255).astype(np.uint8)) < 0.9
    assert summarize_image([{"psnr": math.inf, "ssim": 1.0}, {"psnr": 20.0, "ssim": 0.5}]) == pytest.approx(
        {"psnr": 60.0, "ssim": 0.75, "images": 2})


@pytest.fixture(scope="module")
def lpips_random():
    torch.manual_seed(0)
    return Lpips("alex", backbone="random")  # the real torchmetrics LPIPS network, random AlexNet features


def test_lpips_real_network_with_random_backbone(lpips_random, sample_images):
    from PIL import Image

    img = np.asarray(Image.fromarray(sample_images[0]).resize((64, 64)))
    noisy = np.clip(img.astype(int) + np.random.default_rng(0).integers(-60, 60, img.shape), 0, 255).astype(np.uint8)
    same, diff = lpips_random([img, img], [img, noisy])
    assert same == pytest.approx(0.0, abs=1e-6) and diff > 0
    stats = score("albedo", noisy, img, MetricsConfig(lpips_backbone="random"), lpips=lpips_random)
    assert set(stats) == {"psnr", "ssim", "lpips"} and stats["lpips"] == pytest.approx(diff, rel=1e-4)


def test_missing_lpips_weights_is_one_clear_line(monkeypatch, tmp_path):
    from jodi.eval.image import MetricWeightsUnavailableError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache, and no network here
    monkeypatch.setattr("torch.hub.load_state_dict_from_url",
                        lambda *a, **k: (_ for _ in ()).throw(OSError("unreachable")))
    with pytest.raises(MetricWeightsUnavailableError, match="LPIPS: torchvision could not load") as info:
        Lpips("alex")
    assert "\n" not in str(info.value)


class _TinyFeatures(torch.nn.Module):
    """A stand-in FID feature extractor: mean colour and its spread, passed through torchmetrics' `feature=`."""

    num_features = 6

    def forward(self, x):
        x = x.float() / (255.0 if x.dtype == torch.uint8 else 1.0)
        return torch.cat([x.mean((2, 3)), x.std((2, 3))], dim=1).double()


def test_fid_with_a_stand_in_feature_extractor(sample_images):
    rng = np.random.default_rng(0)
    real = [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(8)]
    fid = Fid(feature=_TinyFeatures(), size=32)
    fid.update(real, real=True)
    assert fid.compute() is None  # no generated pictures yet
    fid.update(real, real=False)
    assert fid.compute() == pytest.approx(0.0, abs=1e-3)
    far = Fid(feature=_TinyFeatures(), size=32)
    far.update(real, real=True)
    far.update([np.clip(r.astype(int) // 4, 0, 255).astype(np.uint8) for r in real], real=False)
    assert far.compute() > 0.05


def test_condition_consistency_reextracts_with_the_annotator(lpips_random):
    from schemas.encoding import encode_edge

    img = np.zeros((32, 32, 3), np.uint8)
    img[:, 16:] = 255
    extract = lambda x: encode_edge((np.abs(np.diff(x.mean(-1), axis=1, prepend=0)) > 0).astype(float))  # noqa: E731
    cond = extract(img)
    same, = condition_consistency([cond], [img], extract, lpips_random)
    other, = condition_consistency([cond], [img.transpose(1, 0, 2).copy()], extract, lpips_random)
    assert same == pytest.approx(0.0, abs=1e-6) and other > same


def test_missing_fid_inception_is_one_clear_line():
    pytest.importorskip("torchmetrics")
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("torch-fidelity is installed: the default extractor would try to download its weights")
    from jodi.eval.image import MetricWeightsUnavailableError

    with pytest.raises(MetricWeightsUnavailableError, match="pip install torch-fidelity") as info:
        Fid()
    assert "\n" not in str(info.value)
