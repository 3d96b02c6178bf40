"""Training recipes end to end on CPU: a class-folder corpus with an extra label domain -> latent cache (classes,
DINOv2 features, the new domain) -> MMGen with class labels and REPA, Jodi grown by a domain, LoRA.

The labeled dataset is written through the real record schema (Parquet, `schemas.record`); the extra domain is
labeled by a registered annotator outside the Joint seven's defaults (`canny`, a second edge-like domain), as a
user's own labeler would: one `<id>.png` per record in a folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from jodi.latents import CacheConfig, run_cache_job
from jodi.loading import load_model
from jodi.model import build_model
from jodi.train import DataSource, NewDomain, TrainConfig, train_local
from jodi.train.ckpt import build_initial_model
from schemas.domains import ALL_DOMAINS

CLASSES = ("cat", "rocket")


def _jpeg(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


@pytest.fixture(scope="module")
def corpus(sample_images, tmp_path_factory) -> tuple[Path, Path]:
    """(label-job-style dataset with 8 records in 2 class folders, folder of `canny` labels)."""
    from annotators.registry import build
    from schemas.codec import encode_file
    from schemas.encoding import encode_label
    from schemas.record import RECORD_SCHEMA, LabeledRecord

    root = tmp_path_factory.mktemp("corpus")
    canny = build("canny")
    records, extra = [], root / "canny"
    extra.mkdir()
    for k in range(8):
        cls = CLASSES[k % 2]
        img = np.ascontiguousarray(np.roll(sample_images[2 + k % 2], 7 * k, axis=1)[:96, :96])
        data = _jpeg(img)
        rid = hashlib.md5(data).hexdigest()
        edge = encode_label("edge", canny.annotate([img])[0])
        records.append(LabeledRecord(
            id=rid, source=f"/photos/{cls}/{k}.jpg", image=data, height=96, width=96,
            captions={"BLIP2-OPT-2.7b": f"a photo of a {cls}"},
            labels={"lineart": encode_file("lineart", 255 - edge), "edge": encode_file("edge", edge)},
        ))
        Image.fromarray(edge).save(extra / f"{rid}.png")
    (root / "labels" / "data").mkdir(parents=True)
    table = pa.Table.from_pylist([r.to_row() for r in records], schema=RECORD_SCHEMA)
    pq.write_table(table, root / "labels" / "data" / "shard-00000.parquet")
    return root / "labels", extra


@pytest.fixture(scope="module")
def dino(tmp_path_factory) -> str:
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("dino")
    cfg = Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       patch_size=14, image_size=56)
    Dinov2Model(cfg).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def cache(ray_local, corpus, dino, tmp_path_factory) -> Path:
    labels, extra = corpus
    out = tmp_path_factory.mktemp("cache") / "cache"
    cfg = CacheConfig(input=str(labels), output=str(out), vae="tiny", text_encoder="tiny", resolution=128,
                      batch_size=4, classes_from_folders=True, dino=dino, extra_domains=(("canny", str(extra)),))
    assert run_cache_job(cfg) == {"total": 8, "new": 8, "cached": 8}
    return out


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> str:
    """A tiny random 8-domain Jodi standing in for the released checkpoint."""
    torch.manual_seed(11)
    path = tmp_path_factory.mktemp("released") / "Jodi.safetensors"
    save_file(build_model("tiny").state_dict(), str(path))
    return str(path)


def _cfg(cache: Path, tmp: Path, **kw) -> TrainConfig:
    base = dict(data=(DataSource(str(cache)),), output=str(tmp), batch_size=2, max_steps=3, log_every=1,
                checkpoint_every=3, shuffle_buffer=4, gradient_checkpointing=False, seed=5,
                new_domains=(NewDomain("canny", copy_from="edge"),))
    return TrainConfig(**{**base, **kw})


def test_cache_stores_classes_dino_features_and_the_new_domain(cache, corpus):
    meta = json.loads((cache / "cache.json").read_text())
    assert meta["domains"] == [*ALL_DOMAINS, "canny"] and meta["classes"] == list(CLASSES) and meta["dino_dim"] == 32
    rows = pq.read_table(cache / "latents").to_pylist()
    assert sorted(r["class_name"] for r in rows) == sorted(CLASSES * 4)
    for r in rows:
        present = np.frombuffer(r["present"], np.uint8)
        assert present.tolist() == [1, 1, 1, 0, 0, 0, 0, 1, 1]  # image, lineart, edge, black openpose, canny
        z = np.frombuffer(r["latents"], np.float16).reshape(9, 32, r["latent_h"], r["latent_w"])
        assert np.abs(z[8]).sum() > 0
        feats = np.frombuffer(r["dino"], np.float16).reshape(-1, 32)
        assert feats.shape[0] == r["latent_h"] * r["latent_w"] and np.isfinite(feats).all()


def test_mmgen_class_conditioned_with_repa_trains_and_reloads(cache, tmp_path):
    cfg = _cfg(cache, tmp_path, preset="mmgen_tiny", num_classes=2, repa_weight=0.5, modality_dropout=0.2, lr=1e-3)
    record = train_local(cfg, tmp_path / "ckpt")
    assert record["step"] == 3 and np.isfinite(record["loss"])
    folder = tmp_path / "ckpt" / "checkpoint_3"
    model = load_model(str(folder / "model.safetensors"), "tiny")
    assert model.cfg.num_classes == 2 and model.cfg.domains[-1] == "canny" and model.projector is not None
    from jodi.sampling import SamplerConfig, sample

    role = torch.tensor([[0] * 9])  # joint generation of all 9 domains from a class label
    clean = torch.zeros(1, 9, 32, 4, 4)
    ids = torch.tensor([1])
    out = sample(model, role, clean, (ids, None), (model.null_condition(ids), None), SamplerConfig(steps=2))
    assert out.shape == clean.shape and torch.isfinite(out).all()


def test_grown_domain_trains_and_is_generated(cache, released, tmp_path):
    cfg = _cfg(cache, tmp_path, init="jodi", init_weights=released, timesteps="per_domain")
    start = build_initial_model(cfg)
    base = load_file(released)
    assert torch.equal(start.x_embedders[8].proj.weight, base["x_embedders.2.proj.weight"])  # canny <- edge
    assert torch.equal(start.final_layers[8].linear.weight, base["final_layers.2.linear.weight"])
    train_local(cfg, tmp_path / "ckpt")
    weights = tmp_path / "ckpt" / "checkpoint_3" / "model.safetensors"

    from jodi.codecs import LatentCodec, TextEncoder
    from jodi.pipeline import JodiPipeline
    from jodi.sampling import SamplerConfig

    model = load_model(str(weights), "jodi_1600m")  # model.json: tiny, 9 domains, decoupled timesteps
    assert model.cfg.domains[-1] == "canny" and model.cfg.decoupled_timesteps
    pipe = JodiPipeline(model, LatentCodec.tiny(), TextEncoder.tiny(max_length=16)).with_null_caption()
    fast = SamplerConfig(steps=2)
    joint = pipe("a photo of a cat", generate=["image", "canny"], height=64, width=64, sampler=fast)
    assert joint["canny"].shape == (64, 64, 3) and joint["canny"].dtype == np.uint8
    seen = pipe.perceive(joint["image"], labels=["canny"], sampler=fast)
    assert set(seen) == {"canny"} and seen["canny"].shape == (64, 64, 3)


def test_lora_run_saves_the_adapter_alone(cache, released, tmp_path):
    cfg = _cfg(cache, tmp_path, init="jodi", init_weights=released, lora_rank=4, lr=1e-2)
    start = build_initial_model(cfg).state_dict()
    train_local(cfg, tmp_path / "ckpt")
    folder = tmp_path / "ckpt" / "checkpoint_3"
    with safe_open(str(folder / "adapter.safetensors"), framework="pt") as f:
        keys = set(f.keys())
    assert any("lora_A" in k for k in keys)
    assert all("lora_" in k or k.startswith(("x_embedders", "final_layers")) for k in keys)
    full = load_file(str(folder / "model.safetensors"))
    qkv = "blocks.0.attn.qkv.weight"
    assert torch.equal(full[qkv.replace(".weight", ".base_layer.weight")], start[qkv])  # the base stayed frozen
    lora_b = [k for k in keys if "lora_B" in k]
    assert any(full[k].abs().sum() > 0 for k in lora_b)  # and the adapters moved


def test_mismatched_cache_and_model_domains_fail_clearly(cache, tmp_path):
    from jodi.train.runner import make_collator

    with pytest.raises(ValueError, match="new_domains"):
        make_collator(dataclasses.replace(_cfg(cache, tmp_path), new_domains=()))
    with pytest.raises(ValueError, match="REPA needs an MMGen preset"):
        make_collator(_cfg(cache, tmp_path, repa_weight=0.5))
