"""Depth Anything 3 through the depth-anything-3 package's own network.

Tiny random-weight checkpoints of the real DA3 network classes (tests/builders/new_models.py) are
written in the hub layout `DepthAnything3.from_pretrained` reads and loaded through the annotator's
own loading path, offline; our labels are compared with the package's own per-image recipe
(InputProcessor -> network -> OutputProcessor) on the same weights.
"""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest

from annotators.depth_anything3 import fill_sky, load_network, network_config, upper_bound_size
from annotators.loading import ModelUnavailableError
from annotators.registry import REGISTRY, build
from schemas.encoding import encode_label
from tests.builders.new_models import BASELINES, DA3_PRESETS, RANDOM
from tests.builders.tiny import label_photos, tiny_checkpoint

needs_da3 = pytest.mark.skipif(importlib.util.find_spec("depth_anything_3") is None,
                               reason="depth-anything-3 is not installed (`make install` adds it)")


@pytest.fixture(scope="module")
def built():
    """name -> (folder, overrides) of its tiny random checkpoint, written once per session."""
    return tiny_checkpoint


@pytest.fixture(scope="module")
def images(sample_images):
    """Real photographs at small sizes: landscape, portrait and two more aspects (60-130 px)."""
    picks = [sample_images[0][::6, ::6], sample_images[1][::7, ::5], np.rot90(sample_images[2][::7, ::7]),
             sample_images[3][::8, ::8]]
    return [np.ascontiguousarray(img) for img in picks]


def test_presets_are_registered_pinned_and_covered():
    for name in DA3_PRESETS:
        cls, config = REGISTRY[name].cls, REGISTRY[name].preset
        assert name in RANDOM and name in BASELINES and cls.domain == "depth"
        assert config.model_id.startswith("depth-anything/DA3") and len(config.revision) == 40
        assert config.resolution == 504 and config.multiple_of == 14  # upstream process_res, the ViT patch


@needs_da3
@pytest.mark.parametrize("hw", [(480, 640), (640, 480), (1080, 1920), (97, 61), (504, 504), (333, 1000)])
def test_working_size_is_the_package_input_processors(hw):
    from depth_anything_3.utils.io.input_processor import InputProcessor

    image = np.zeros((*hw, 3), np.uint8)
    x, _, _ = InputProcessor()([image], process_res=504, process_res_method="upper_bound_resize", num_workers=1)
    assert upper_bound_size(hw, 504) == tuple(x.shape[-2:])


@needs_da3
def test_mono_labels_keep_size_batch_like_single_images_and_match_the_package_recipe(built, images, capsys):
    import torch
    import torch.nn.functional as F

    folder, overrides = built("da3mono_large")
    capsys.readouterr()
    ann = build("da3mono_large", **overrides)
    assert capsys.readouterr().out == ""  # the package's ViT logs "[INFO ] using MLP layer as FFN" unless quietened
    together = ann.annotate(images)
    assert len({size for size, _ in ann.batches(images)}) > 1  # several working sizes in one call
    baseline = BASELINES["da3mono_large"](folder)
    for img, label in zip(images, together, strict=True):
        assert label.shape == img.shape[:2] and label.dtype == np.float32
        assert np.isfinite(label).all() and label.min() > 0 and label.std() > 0  # inverse depth, not constant
        np.testing.assert_allclose(label, ann.annotate([img])[0], rtol=1e-4, atol=1e-5)
        # The package's own recipe: its depth (larger = farther) at the processed size, inverted, resized back.
        theirs = 1.0 / baseline(img).depth.clip(1e-6)
        theirs = F.interpolate(torch.from_numpy(theirs)[None], size=img.shape[:2], mode="bilinear")
        corr = np.corrcoef(label.ravel(), theirs[0, 0].numpy().ravel())[0, 1]
        assert corr > 0.9, corr  # same network and sky rule; the resize kernels differ (OpenCV area vs bilinear)
    encoded = encode_label("depth", together[0])
    assert encoded.shape == images[0].shape[:2] and encoded.max() == 255 and encoded.min() == 0


@needs_da3
def test_any_view_model_labels_one_view_per_image(built, images):
    folder, overrides = built("da3_small")
    ann = build("da3_small", **overrides)
    assert ann.net.cam_dec is not None  # an any-view network (camera decoder), run here on single views
    labels = ann.annotate(images[:2])
    baseline = BASELINES["da3_small"](folder)
    for img, label in zip(images, labels):
        assert label.shape == img.shape[:2] and np.isfinite(label).all() and label.std() > 0
        np.testing.assert_allclose(label, ann.annotate([img])[0], rtol=1e-4, atol=1e-5)
        assert baseline(img).depth.shape == (1, *upper_bound_size(img.shape[:2], ann.config.resolution))


@needs_da3
def test_sky_fill_is_the_networks_own_rule_per_image(built):
    import torch
    from addict import Dict

    _, overrides = built("da3mono_large")
    net = load_network("t", overrides["model_id"], None)
    g = torch.Generator().manual_seed(0)
    depth = torch.rand(1, 1, 40, 50, generator=g) * 10 + 1
    sky = torch.zeros(1, 1, 40, 50)
    sky[..., :12, :] = 0.9  # the top rows are sky
    theirs = net._process_mono_sky_estimation(Dict(depth=depth.clone(), sky=sky)).depth
    ours = fill_sky(depth[0, 0], sky[0, 0])
    torch.testing.assert_close(ours, theirs[0, 0])
    assert torch.allclose(ours[12:], depth[0, 0, 12:]) and (ours[:12] == ours[0, 0]).all()
    few = torch.zeros(40, 50)
    few[0, :5] = 1.0  # 5 sky pixels: too few, nothing changes
    assert torch.equal(fill_sky(depth[0, 0], few), depth[0, 0])


@needs_da3
def test_config_json_cannot_name_other_code_and_presets_come_from_the_package(tmp_path):
    graph = network_config("DepthAnything3", {"model_name": "da3-small"})
    hostile = {"model_name": "x", "config": {**graph, "head": {"__object__": {"path": "os", "name": "system"}}}}
    with pytest.raises(ValueError, match="os.system, which is not a Depth Anything 3 network class"):
        network_config("DepthAnything3", hostile)
    with pytest.raises(ValueError, match="must build a DepthAnything3Net"):
        network_config("DepthAnything3", {"config": {"__object__": {"path": "subprocess", "name": "run"}}})
    graph["head"]["features"] = "${eval:__import__('os').getpid()}"
    with pytest.raises(ValueError, match="interpolation"):
        network_config("DepthAnything3", {"config": graph})
    with pytest.raises(ValueError, match="not a depth-anything-3 preset.*da3mono-large"):
        network_config("DepthAnything3", {"model_name": "da4"})
    with pytest.raises(ValueError, match="metric model"):
        network_config("DepthAnything3", {"model_name": "da3nested-giant-large"})
    # The hub layout names a preset: its graph is the package's YAML (DA3-SMALL: ViT-S, dual DPT, cameras).
    assert graph["net"]["name"] == "vits" and graph["head"]["__object__"]["name"] == "DualDPT" and "cam_dec" in graph
    (tmp_path / "config.json").write_text(json.dumps(hostile))
    with pytest.raises(ValueError, match="not a Depth Anything 3 network class"):
        build("da3_small", model_id=str(tmp_path))


@needs_da3
def test_missing_weights_say_which_model_and_how_to_provide_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match=r"da3mono_large: model 'depth-anything/DA3MONO-LARGE.*--model"):
        build("da3mono_large")
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        build("da3metric_large", model_id=str(tmp_path / "absent"))


def test_missing_package_gives_the_install_command(tmp_path, monkeypatch):
    for name in {"depth_anything_3", *(m for m in sys.modules if m.startswith("depth_anything_3."))}:
        monkeypatch.setitem(sys.modules, name, None)  # as if the package were not installed
    with pytest.raises(ImportError, match=r"pip install --no-deps 'depth-anything-3==0\.1\.1'"):
        build("da3_base", model_id=str(tmp_path))


@needs_da3
def test_label_job_writes_joint_depth_from_da3(built, tmp_path, ray_local):
    """da3mono_large in a real label job (Ray workers import the package and load the folder)."""
    from PIL import Image

    _, overrides = built("da3mono_large")
    stats, out = label_photos(tmp_path, "da3mono_large", overrides, [(64, 96), (96, 64)])
    assert stats["records_out"] == 2 and stats["per_domain"] == {"depth": 2}, stats
    for line in (json.loads(ln) for ln in (out / "metadata.jsonl").read_text().splitlines()):
        depth = np.asarray(Image.open(out / line["annotation_depth"]))
        assert depth.ndim == 2 and depth.min() == 0 and depth.max() == 255  # Joint: per-image min-max, mode L
        assert depth.shape == np.asarray(Image.open(out / line["image"])).shape[:2]
