"""`jodi eval` and `jodi eval-annotators` end to end on tiny datasets: runner outputs, checkpoints, Ray path,
real ground truth (scikit-image's stereo_motorcycle disparity)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from jodi.eval.data import read_split, split_rows
from jodi.eval.metrics import MetricsConfig, score
from jodi.eval.runner import EvalConfig, PipelineSpec, evaluate
from schemas.codec import encode_file
from schemas.domains import relative_path
from schemas.encoding import encode_depth, encode_edge, encode_normal, encode_seg

TINY = PipelineSpec(None, preset="tiny", vae="tiny", text_encoder="tiny")
DOMAINS = ("edge", "depth", "normal", "albedo", "seg_12colors")


def _write(root: Path, domain: str, rid: str, array: np.ndarray) -> str:
    rel = relative_path(domain, rid)
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_bytes(encode_file(domain, array))
    return rel


def _labels(image: np.ndarray) -> dict[str, np.ndarray]:
    """Cheap but image-dependent labels in the Joint encodings."""
    from skimage.feature import canny

    grey = image.mean(-1) / 255.0
    h, w = grey.shape
    rows = np.linspace(0.2, 1.0, h)[:, None] * np.ones((1, w))
    gy, gx = np.gradient(grey)
    return {
        "edge": encode_edge(canny(grey, sigma=1.0).astype(float)),
        "depth": encode_depth(rows + 0.1 * grey),
        "normal": encode_normal(np.stack([-gx * 4, -gy * 4, np.ones_like(grey)], -1)),
        "albedo": image,
        "seg_12colors": encode_seg(np.where(grey > 0.5, 6, 7) * (rows > 0.5) + 1 * (rows <= 0.5)),
    }


@pytest.fixture(scope="module")
def tiny_joint(tmp_path_factory, sample_images) -> Path:
    """A Joint folder with train/test splits of 48 px sample photographs and their labels."""
    root = tmp_path_factory.mktemp("joint")
    for n, photo in enumerate(sample_images):
        img = Image.fromarray(photo)
        img = np.asarray(img.resize((round(48 * img.width / img.height), 48)))
        rid = f"sample{n}"
        meta = {"image": _write(root, "image", rid, img), "info": {"height": 48, "width": img.shape[1]},
                "caption": {"test": f"photo number {n}"}}
        meta.update({f"annotation_{d}": _write(root, d, rid, a) for d, a in _labels(img).items()})
        split = "test" if n < 2 else "train"
        with open(root / f"metadata.{split}.jsonl", "a") as f:
            f.write(json.dumps(meta) + "\n")
    return root


class _Features(torch.nn.Module):
    """FID stand-in passed through torchmetrics' `feature=`: colour means and spreads."""

    num_features = 6

    def forward(self, x):
        x = x.float() / (255.0 if x.dtype == torch.uint8 else 1.0)
        return torch.cat([x.mean((2, 3)), x.std((2, 3))], 1).double()


def _edge_extractor(domain: str):
    from skimage.feature import canny

    return lambda image: encode_edge(canny(image.mean(-1) / 255.0, sigma=1.0).astype(float))


def test_eval_writes_json_markdown_and_grid(tiny_joint, tmp_path):
    items = list(read_split(tiny_joint, "test"))
    assert [it.id for it in items] == ["sample0", "sample1"] and set(items[0].labels) == set(DOMAINS)
    cfg = EvalConfig(domains=DOMAINS, steps=1, control=("edge",), control_steps=1,
                     metrics=MetricsConfig(lpips_backbone="random"), grid_rows=2, cell=32)
    report = evaluate(items, cfg, TINY, tmp_path, extractor_factory=_edge_extractor, fid_feature=_Features())
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["images"] == 2 and set(saved["perception"]) == set(DOMAINS)
    p = saved["perception"]
    assert 0 <= p["depth"]["delta1"] <= 1 and p["depth"]["abs_rel"] > 0 and p["depth"]["images"] == 2
    assert 0 <= p["normal"]["median"] <= 180 and p["normal"]["pixels"] > 0
    assert 0 <= p["edge"]["ods"] <= 1 and p["edge"]["ois"] >= 0
    assert p["seg_12colors"]["miou"] is not None and p["albedo"]["lpips"] > 0
    assert {v["reference"] for v in p.values()} == {"labels"}
    assert saved["control"]["edge"]["images"] == 2 and saved["control"]["edge"]["fid"] >= 0
    assert 0 < saved["control"]["edge"]["lpips"]
    md = (tmp_path / "eval.md").read_text()
    assert "| depth | labels | abs_rel" in md and "| edge |" in md.split("Controllable")[1]
    grid = Image.open(tmp_path / "grid.png")
    assert grid.size == (32 * (1 + 2 * len(DOMAINS)), 16 + 32 * 2)
    assert report["perception"]["depth"]["abs_rel"] == pytest.approx(p["depth"]["abs_rel"])


def test_checkpoint_folder_loads_newest_step(tmp_path):
    from safetensors.torch import save_file

    from jodi.model import build_model

    torch.manual_seed(3)
    model = build_model("tiny")
    for step, scale in ((5, 0.0), (12, 1.0)):
        folder = tmp_path / "run" / f"checkpoint_{step}"
        folder.mkdir(parents=True)
        weights = {k: (v * scale).contiguous() for k, v in model.state_dict().items()}
        save_file(weights, str(folder / "model.safetensors"))
    spec = PipelineSpec(str(tmp_path / "run"), preset="tiny", vae="tiny", text_encoder="tiny")
    assert spec.weights_file().endswith("checkpoint_12/model.safetensors")
    loaded = spec().model
    got = loaded.state_dict()
    for k, v in model.state_dict().items():  # the null caption is re-encoded by the text encoder at load time
        assert k == "y_embedder.y_embedding" or torch.equal(got[k], v), k
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        PipelineSpec(str(tmp_path)).weights_file()


def test_ray_data_actors_give_the_local_numbers(tiny_joint, tmp_path, ray_local):
    items = list(read_split(tiny_joint, "test"))
    cfg = EvalConfig(domains=("depth", "normal", "seg_12colors"), steps=1, metrics=MetricsConfig(lpips_backbone="none"))
    local = evaluate(items, cfg, TINY, tmp_path / "local")
    rows = split_rows(tiny_joint, "test", domains=cfg.domains)  # the workers read the files
    distributed = evaluate(rows, EvalConfig(**{**cfg.__dict__, "num_workers": 1}), TINY, tmp_path / "ray")
    assert distributed["images"] == local["images"] == 2
    for d in ("depth", "normal", "seg_12colors"):
        a, b = local["perception"][d], distributed["perception"][d]
        assert {k: v for k, v in a.items() if k != "iou"} == pytest.approx({k: v for k, v in b.items() if k != "iou"})


def test_running_sums_equal_list_summaries():
    from jodi.eval.metrics import summarize
    from jodi.eval.normal import normal_stats
    from jodi.eval.runner import _add
    from jodi.eval.seg import confusion

    rng = np.random.default_rng(0)
    normals = [normal_stats(rng.normal(size=(6, 6, 3)), rng.normal(size=(6, 6, 3))) for _ in range(3)]
    segs = [confusion(rng.integers(0, 12, (6, 6)), rng.integers(0, 12, (6, 6))) for _ in range(3)]
    kept_normal: list = []
    kept_seg: list = []
    for n, c in zip(normals, segs):
        _add("normal", kept_normal, n)
        _add("seg", kept_seg, c)
    assert len(kept_normal) == len(kept_seg) == 1  # fixed memory however many images
    assert summarize("normal", kept_normal) == pytest.approx(summarize("normal", normals))
    assert summarize("seg_12colors", kept_seg)["miou"] == pytest.approx(summarize("seg_12colors", segs)["miou"])


def test_eval_cli_on_a_split(tiny_joint, tmp_path):
    from jobs.cli import main

    out = tmp_path / "cli"
    rc = main(["eval", "--tiny", "--checkpoint", "random", "--dataset", str(tiny_joint), "--split", "test",
               "--domains", "depth,segmentation", "--steps", "1", "--lpips-backbone", "none", "--output", str(out)])
    assert rc == 0
    saved = json.loads((out / "eval.json").read_text())
    assert set(saved["perception"]) == {"depth", "seg_12colors"} and saved["info"]["split"] == "test"
    assert (out / "grid.png").exists() and "seg_12colors" in (out / "eval.md").read_text()


# ---------------------------------------------------------------- real ground truth


@pytest.fixture(scope="module")
def motorcycle(tmp_path_factory) -> Path:
    """scikit-image's stereo_motorcycle left view with its real disparity as `ground_truth_depth` (.npy)."""
    from skimage import data

    left, _, disparity = data.stereo_motorcycle()
    root = tmp_path_factory.mktemp("motorcycle")
    step = 6  # 500x741 -> 84x124, nearest so invalid (inf) pixels stay invalid
    img, disp = left[::step, ::step], disparity[::step, ::step].astype(np.float32)
    meta = {"image": _write(root, "image", "motorcycle", np.ascontiguousarray(img)),
            "info": {"height": img.shape[0], "width": img.shape[1]}, "caption": {},
            "ground_truth_depth": "ground_truth_depth/motorcycle.npy"}
    (root / "ground_truth_depth").mkdir()
    np.save(root / "ground_truth_depth" / "motorcycle.npy", disp)
    (root / "metadata.jsonl").write_text(json.dumps(meta) + "\n")
    return root


def test_real_disparity_scores_through_the_joint_encoding(motorcycle):
    item = next(read_split(motorcycle))
    gt, decoded, kind = item.reference("depth")
    assert decoded and kind == "ground truth" and 0.85 < np.isfinite(gt).mean() < 1
    cfg = MetricsConfig().depth.__class__(pred_kind="disparity", gt_kind="disparity", align_space="disparity")
    metrics = MetricsConfig(depth=cfg)
    # the true disparity stored as a Joint label (8-bit min-max) is near perfect after alignment ...
    oracle = encode_depth(np.where(np.isfinite(gt), gt, np.nan))
    good = score("depth", oracle, gt, metrics, ref_decoded=True)
    assert good["abs_rel"] < 0.02 and good["delta1"] > 0.99
    # ... an upside-down one is not
    bad = score("depth", oracle[::-1], gt, metrics, ref_decoded=True)
    assert bad["abs_rel"] > 0.1 and bad["delta1"] < 0.9


def test_eval_annotators_against_real_disparity(motorcycle, tmp_path):
    from tests.builders.depth_seg import depth_anything_v2
    from jobs.cli import main

    model = depth_anything_v2("small")(tmp_path / "da2")  # random weights, the real architecture and loader
    out = tmp_path / "ann"
    rc = main(["eval-annotators", "--dataset", str(motorcycle), "--annotator", "depth_anything_v2_small",
               "--override", f"depth_anything_v2_small:model_id={model['model_id']}",
               "--override", f"depth_anything_v2_small:resolution={model['resolution']}", "--output", str(out)])
    assert rc == 0
    s = json.loads((out / "eval.json").read_text())["annotators"]["depth_anything_v2_small"]
    assert s["domain"] == "depth" and s["reference"] == "ground truth" and s["images"] == 1
    assert 0 < s["abs_rel"] and 0 <= s["delta1"] <= 1 and s["rmse"] > 0
    assert "depth_anything_v2_small | depth | ground truth" in (out / "eval.md").read_text()


def test_parquet_split_reads_the_same_items_on_the_workers(tiny_joint, tmp_path, ray_local):
    import pickle

    import pyarrow as pa
    import pyarrow.parquet as pq

    from schemas.joint import iter_joint
    from schemas.record import RECORD_SCHEMA

    (tmp_path / "data").mkdir()
    rows = [rec.to_row() for rec in iter_joint(tiny_joint, "test")]
    pq.write_table(pa.Table.from_pylist(rows, schema=RECORD_SCHEMA), tmp_path / "data" / "test-00000.parquet")
    local = list(read_split(tmp_path, "test", domains=DOMAINS))
    remote = [pickle.loads(r["item"]) for r in split_rows(tmp_path, "test", limit=5, domains=DOMAINS).iter_rows()]
    assert sorted(it.id for it in remote) == sorted(it.id for it in local) == ["sample0", "sample1"]
    by_id = {it.id: it for it in remote}
    for it in local:
        np.testing.assert_array_equal(by_id[it.id].image, it.image)
        np.testing.assert_array_equal(by_id[it.id].labels["depth"], it.labels["depth"])
