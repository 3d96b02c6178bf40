"""Fail fast, in one line: each user mistake of issue 16 as a new user would make it, with its exit code
(2 = could not start as asked, 1 = the job or the data failed), its single line on stderr, and nothing
written where nothing should be. The CLI runs in-process; one subprocess checks `python -m jobs.label`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import ray
import torch
from PIL import Image

from jobs.cli import main as jodi
from pipeline.config import ConfigError, LabelJobConfig, StageResources, config_from_mapping
from pipeline.preflight import Offer, PreflightError, StageDemand, check_resources, cluster_offer, shortfall
from schemas.checkpoint import CheckpointError, UnsafeCheckpointError, load_torch_file
from tests.bad_inputs import jpeg_bytes, photo, png_header_bomb

REPO = Path(__file__).resolve().parents[1]


def one_line(capsys) -> str:
    """The single line the command printed on stderr (fails when there are more)."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(photo((64, 96))).save(folder / "one.jpg")
    return folder


# ----- the job config: every field by type and range, before Ray starts or a file is written -----------

CONFIG_CASES = {
    "shard-size flag 0": ([("--shard-size", "0")], "", "shard_size must be greater than or equal to 1"),
    "shard_size -5": ([], "shard_size: -5\n", "shard_size must be greater than or equal to 1"),
    "min_short_side big": ([], 'min_short_side: "big"\n', "min_short_side must be a valid integer (a number of pixels"),
    "batch-size flag 0": ([("--batch-size", "0")], "", "default_resources.batch_size must be greater than or equal"),
    "batch_size -1 for one annotator": ([], "resources:\n  canny: {batch_size: -1}\n", "resources.canny.batch_size"),
    "batch-size flag -4": ([("--batch-size", "-4")], "", "default_resources.batch_size must be greater than or equal"),
    "num_gpus lots": ([], "default_resources: {num_gpus: lots}\n", "default_resources.num_gpus must be a valid number"),
    "resources not a mapping": ([], "default_resources: 3\nresources:\n  canny: {batch_size: 2}\n",
                                "default_resources must be a dictionary or an instance of StageResources, got 3"),
    "annotators a string": ([], "annotators: canny\n", "annotators must be a valid tuple (a list of annotator names"),
    "unknown setting": ([], "shardsize: 4\n", "unknown setting 'shardsize'"),
    "yaml not a mapping": ([], "- canny\n", "expected a mapping of job settings, got list"),
    "yaml syntax": ([], "annotators: [canny\n", "not valid YAML"),
    "jpeg_quality 101": ([], "jpeg_quality: 101\n", "jpeg_quality must be less than or equal to 100"),
    "dtype": ([], "dtype: int8\n", "dtype must be one of auto, float32, bfloat16, float16"),
    "pool": ([], "default_resources: {pool_min: 3, pool_max: 2}\n", "pool_max (2) must be >= pool_min (3)"),
    "unknown annotator": ([("-a", "cany")], "", "unknown annotator 'cany'; known annotators:"),
    "unknown override field": ([], "overrides:\n  canny: {sigma: 2}\n", "overrides.canny:"),
    "two annotators one domain": ([("-a", "canny,hed_bsds")], "", "both produce 'edge'"),
    "gpus on a CPU machine": ([("--gpus", "1")], "", "not enough resources: canny needs 1 GPU per actor"),
    "more GPUs than any node": ([("--gpus", "4096")], "", "not enough resources: canny needs 4096 GPUs per actor"),
    "cpus": ([], "default_resources: {num_cpus: 100000}\n", "canny needs 100000 CPUs per actor"),
    "memory": ([], "default_resources: {memory: 1000000000000000}\n", "canny needs 931322.6 GiB of memory per actor"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_bad_job_config_is_one_line_exit_2_and_writes_nothing(case, photos, tmp_path, capsys):
    flags, yaml_text, expected = CONFIG_CASES[case]
    if case == "gpus on a CPU machine" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = tmp_path / "out"
    argv = ["label", str(photos), str(out), "--quiet"]
    if "annotators" not in yaml_text and not any(f == "-a" for f, _ in flags):
        argv += ["-a", "canny"]
    for flag, value in flags:
        argv += [flag, value]
    if yaml_text:
        (tmp_path / "job.yaml").write_text(yaml_text)
        argv += ["--config", str(tmp_path / "job.yaml")]
    ray_was_running = ray.is_initialized()
    assert jodi(argv) == 2
    line = one_line(capsys)
    assert line.startswith("jodi label: ") and expected in line, line
    assert "Traceback" not in line
    assert not out.exists()  # not even job.json
    assert ray.is_initialized() == ray_was_running  # the check ran without starting Ray


def test_config_checks_apply_to_configs_built_in_code():
    with pytest.raises(ValueError, match="shard_size"):
        LabelJobConfig(input="in", output="out", shard_size=0)
    with pytest.raises(ValueError, match="num_gpus"):
        StageResources(num_gpus=-1)
    with pytest.raises(ConfigError, match=r"resources\.depth\.num_cpus must be greater than 0 \(a number > 0"):
        config_from_mapping({"input": "in", "output": "out", "resources": {"depth": {"num_cpus": 0}}})
    cfg = config_from_mapping({"input": "in", "output": "out", "annotators": ["canny"], "colocate": [["a", "b"]],
                               "resources": {"canny": {"num_gpus": 0.25, "pool_min": 2, "pool_max": 4}}})
    assert cfg.annotators == ("canny",) and cfg.colocate == (("a", "b"),)  # YAML lists become tuples
    assert cfg.resources["canny"] == StageResources(num_gpus=0.25, pool_min=2, pool_max=4)


def test_verbose_shows_the_traceback(photos, tmp_path, capsys):
    assert jodi(["--verbose", "label", str(photos), str(tmp_path / "o"), "-a", "canny", "--shard-size", "0"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ConfigError" in err


def test_python_m_jobs_label_has_the_same_errors(photos, tmp_path):
    """The `ray job submit` entry point goes through the same checks and exit codes."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "jobs.label", str(photos), str(out), "-a", "canny", "--shard-size", "0"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "jodi label: invalid job config: shard_size must be greater than or equal to 1 (an integer >= 1), got 0"
    ]
    assert not out.exists()


# ----- resources on a running cluster: wait for the autoscaler, then name what is missing ----------------


def test_shortfall_names_the_resource_per_node_and_in_total():
    offer = Offer("the Ray cluster", {"CPU": 8.0, "GPU": 2.0}, ({"CPU": 4.0, "GPU": 1.0}, {"CPU": 4.0, "GPU": 1.0}))
    assert shortfall([StageDemand("depth", {"GPU": 0.5}, 4)], offer) is None  # four half-GPU actors fit
    two = shortfall([StageDemand("depth", {"GPU": 2.0}, 1)], offer)
    assert two.startswith("depth needs 2 GPUs per actor; the Ray cluster has at most 1 GPU on one node")
    total = shortfall([StageDemand("depth", {"GPU": 1.0}, 2), StageDemand("normal", {"GPU": 1.0}, 1)], offer)
    assert total.startswith("the job needs 3 GPUs at once (depth 2 GPUs, normal 1 GPU; pools at their minimum")


def test_running_cluster_times_out_naming_the_missing_gpu(ray_local):
    demands = [StageDemand("lotus_normal", {"GPU": 1.0}, 1)]
    if cluster_offer().totals.get("GPU"):
        pytest.skip("this Ray has a GPU")
    with pytest.raises(PreflightError) as err:
        check_resources(demands, cluster_offer, wait_s=0.5)
    line = str(err.value)
    assert line.startswith("not enough resources: lotus_normal needs 1 GPU per actor; the Ray cluster has at most 0")
    assert line.endswith("still missing after waiting 0.5 s for the cluster to scale up")
    check_resources([StageDemand("canny", {"CPU": 1.0}, 1)], cluster_offer, wait_s=0.5)  # fits: no error


# ----- a run that labels nothing exits 1 ----------------------------------------------------------------


def test_a_run_that_labels_nothing_exits_1(tmp_path, ray_local, capsys):
    src = tmp_path / "in"
    src.mkdir()
    (src / "text.jpg").write_bytes(b"not a JPEG\n" * 20)
    (src / "zero.jpg").write_bytes(b"")
    out = tmp_path / "out"
    assert jodi(["label", str(src), str(out), "-a", "canny", "--quiet", "--min-short-side", "32"]) == 1
    captured = capsys.readouterr()
    assert "labeled 0 of 2 inputs" in captured.out
    line = [x for x in captured.err.splitlines() if x.startswith("jodi label:")]
    assert line == [f"jodi label: labeled none of 2 inputs (empty_file 1, not_an_image 1; see {out}/errors/)"]


# ----- dataset tools: a reasoned line naming the file or record, never a traceback ----------------------


def _joint_folder(root: Path, lines: list[dict | str], files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True)
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    text = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines)
    (root / "metadata.jsonl").write_text(text)
    return root


@pytest.fixture(scope="module")
def good_files() -> dict[str, bytes]:
    a = photo((48, 64))
    grey = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (48, 1))  # min-max normalised, as Joint stores depth
    return {"image/a.jpg": jpeg_bytes(a), "annotation_depth/a.jpg": jpeg_bytes(np.dstack([grey] * 3))}


def _line(name: str, **extra) -> dict:
    return {"image": f"image/{name}.jpg", "info": {"height": 48, "width": 64}, "caption": {"m": "a photo"}, **extra}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, good_files) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("hostile")
    good = _line("a", annotation_depth="annotation_depth/a.jpg")
    return {
        "unsafe": _joint_folder(base / "unsafe", [good, _line("a", annotation_depth="../../etc/passwd")], good_files),
        "bad_json": _joint_folder(base / "bad_json", [good, '{"image": "image/a.jpg", "info": '], good_files),
        "bomb": _joint_folder(base / "bomb", [good, _line("b", annotation_depth="annotation_depth/b.png")],
                              {**good_files, "image/b.jpg": good_files["image/a.jpg"],
                               "annotation_depth/b.png": png_header_bomb()}),
        "caption": _joint_folder(base / "caption", [good, {**_line("c"), "caption": {"m": "x" * 50_000_000}}],
                                 {**good_files, "image/c.jpg": good_files["image/a.jpg"]}),
    }


@pytest.mark.parametrize(("tool", "case", "expected"), [
    ("convert", "unsafe", "jodi convert: metadata.jsonl:2: path escapes the dataset root: '../../etc/passwd'"),
    ("convert", "bad_json", "jodi convert: metadata.jsonl:2: not valid JSON"),
    ("preview", "unsafe", "jodi preview: metadata.jsonl:2: path escapes the dataset root: '../../etc/passwd'"),
    ("preview", "bad_json", "jodi preview: metadata.jsonl:2: not valid JSON"),
])
def test_dataset_tools_name_the_bad_line_and_write_nothing(tool, case, expected, hostile, tmp_path, capsys):
    dst = tmp_path / "dst"
    argv = [tool, str(hostile[case]), str(dst), "--to", "parquet"] if tool == "convert" else \
        [tool, str(hostile[case]), "-o", str(dst / "sheet.png")]
    assert jodi(argv) == 1
    assert one_line(capsys).startswith(expected)
    assert not dst.exists()


def test_preview_shows_a_bomb_annotation_as_unreadable_and_names_it(hostile, tmp_path, capsys):
    sheet = tmp_path / "sheet.png"
    assert jodi(["preview", str(hostile["bomb"]), "-o", str(sheet)]) == 0
    line = one_line(capsys)
    assert line.startswith("jodi preview: record b: depth not shown: DecompressionBombError: ") and "900000000" in line
    with Image.open(sheet) as im:
        assert im.width > 0


def test_preview_survives_a_50_mb_caption(hostile, tmp_path, capsys):
    sheet = tmp_path / "sheet.png"
    assert jodi(["preview", str(hostile["caption"]), "-o", str(sheet)]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "wrote" in captured.out and sheet.is_file()


def test_validate_flags_bomb_and_huge_caption(hostile, capsys):
    assert jodi(["validate", str(hostile["bomb"])]) == 1
    out = capsys.readouterr().out
    assert "PROBLEMS: 1 (decompression_bomb=1)" in out
    assert "metadata.jsonl:2 (annotation_depth/b.png): [decompression_bomb] Image size (900000000 pixels)" in out
    assert jodi(["validate", str(hostile["caption"])]) == 1
    out = capsys.readouterr().out
    assert "PROBLEMS: 1 (caption=1)" in out
    assert "metadata.jsonl:2: [caption] caption 'm' has 50,000,000 characters (more than 15,000)" in out


@pytest.mark.parametrize("case", ["bomb", "caption"])
def test_publish_refuses_naming_the_record(case, hostile, tmp_path, capsys):
    staging = tmp_path / "hub"
    code = jodi(["publish", str(hostile[case]), "--repo-id", "u/d", "--dry-run", "--staging", str(staging)])
    assert code == 1
    captured = capsys.readouterr()
    assert "validation failed: nothing uploaded" in captured.out and "Traceback" not in captured.out + captured.err
    assert "metadata.jsonl:2" in captured.out or "train-00000-of-00001.parquet:row 1" in captured.out


# ----- checkpoints: weights only, and a one-line refusal that never suggests switching the check off -----


class NotATensor:
    pass


@pytest.fixture(scope="module")
def pickled_checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "model.pth"
    torch.save({"weight": torch.zeros(2), "extra": NotATensor()}, path)
    return path


def test_pickled_checkpoint_is_refused_in_one_line(pickled_checkpoint, tmp_path):
    with pytest.raises(UnsafeCheckpointError) as err:
        load_torch_file(pickled_checkpoint)
    line = str(err.value)
    assert "\n" not in line and "weights_only" not in line
    assert line.startswith(f"{pickled_checkpoint} is not a safe checkpoint")
    assert "NotATensor" in line and "safetensors.torch.save_file" in line
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="is not a readable PyTorch checkpoint"):
        load_torch_file(garbage)
    torch.save({"weight": torch.ones(3)}, tmp_path / "ok.pth")
    assert torch.equal(load_torch_file(tmp_path / "ok.pth")["weight"], torch.ones(3))


def test_annotator_and_jodi_loaders_refuse_a_pickled_checkpoint(pickled_checkpoint, tmp_path, capsys):
    from annotators.loading import load_torch_checkpoint

    with pytest.raises(UnsafeCheckpointError):
        load_torch_checkpoint("pidinet", str(pickled_checkpoint.parent), pickled_checkpoint.name, None)
    out = tmp_path / "gen"
    argv = ["generate", "--prompt", "x", "--preset", "tiny", "--weights", str(pickled_checkpoint), "--out", str(out)]
    assert jodi(argv) == 2
    line = one_line(capsys)
    assert line.startswith(f"jodi generate: {pickled_checkpoint} is not a safe checkpoint")
    assert "weights_only" not in line and not out.exists()


def test_convert_to_joint_refuses_an_id_that_escapes_before_writing(good_files, tmp_path, capsys):
    from pipeline.convert import write_parquet
    from schemas.record import LabeledRecord

    record = LabeledRecord(id="../../outside", source="x.jpg", image=good_files["image/a.jpg"], height=48, width=64)
    write_parquet([record], tmp_path / "src" / "data")
    dst = tmp_path / "dst"
    assert jodi(["convert", str(tmp_path / "src"), str(dst), "--to", "joint"]) == 1
    line = one_line(capsys)
    assert line.startswith("jodi convert: shard-00000.parquet:row 0: id '../../outside' is not a safe file name")
    assert not dst.exists() and not (tmp_path / "outside.jpg").exists()


def test_other_commands_share_the_exit_codes(tmp_path, capsys):
    (tmp_path / "train.yaml").write_text("max_step: 3\n")
    assert jodi(["train", "--config", str(tmp_path / "train.yaml")]) == 2
    assert one_line(capsys).startswith("jodi train: unknown training config keys ['max_step']")
    assert jodi(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert one_line(capsys) == f"jodi train: {tmp_path / 'missing.yaml'}: No such file or directory"
    with pytest.raises(SystemExit) as done:  # argparse's own usage error
        jodi(["label"])
    assert done.value.code == 2 and "the following arguments are required" in capsys.readouterr().err
