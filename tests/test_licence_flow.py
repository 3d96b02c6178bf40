"""Weight licences from the registry into the data: record provenance, `jodi validate`'s report, the
dataset card, and `jodi publish`'s refusal of non-commercial labels under a commercial licence."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from annotators.registry import entry, licence_of
from pipeline.convert import write_parquet
from pipeline.publish import PublishConfig, publish
from pipeline.validate import validate
from schemas.codec import encode_file
from schemas.encoding import encode_label
from schemas.record import LabeledRecord, Provenance


def _provenance(domain: str, name: str) -> Provenance:
    e = entry(name)
    return Provenance(domain, name, e.preset.model_id, e.preset.revision, e.preset.to_json(), e.licence.name)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, sample_images):
    """Two records labelled with a non-commercial pose model and a permissive edge model."""
    root = tmp_path_factory.mktemp("licensed")
    records = []
    for image in sample_images[:2]:
        small = np.ascontiguousarray(image[::8, ::8])
        h, w = small.shape[:2]
        grey = small[..., 0].astype(np.float32) / 255.0
        edges = np.abs(np.diff(grey, axis=1, prepend=grey[:, :1]))  # dark with white edges, as Joint's are
        edge = encode_file("edge", encode_label("edge", np.clip(edges * 4, 0.0, 1.0)))
        pose = encode_file("openpose", np.zeros((h, w, 3), np.uint8))
        records.append(LabeledRecord(
            id=hashlib.md5(small.tobytes()).hexdigest(), source="mem://x", image=encode_file("image", small),
            height=h, width=w, labels={"edge": edge, "openpose": pose},
            provenance=(_provenance("edge", "hed_bsds"), _provenance("openpose", "openpose")),
        ))  # fmt: skip
    write_parquet(records, root / "data")
    return root


def test_provenance_round_trips_the_licence(dataset):
    import pyarrow.parquet as pq

    rows = pq.read_table(next((dataset / "data").glob("*.parquet"))).to_pylist()
    back = LabeledRecord.from_row(rows[0])
    assert {p.annotator: p.licence for p in back.provenance} == {
        "hed_bsds": "MIT", "openpose": "OpenPose academic non-commercial"
    }


def test_validate_reports_the_weights_licences(dataset):
    report = validate(dataset)
    assert report.ok, report.format()
    assert "weights: hed_bsds (MIT), openpose (OpenPose academic non-commercial)" in report.format()


def test_publish_refuses_non_commercial_labels_under_a_commercial_licence(dataset, tmp_path):
    cfg = PublishConfig(source=str(dataset), repo_id="me/labels", staging=str(tmp_path / "hub"), dry_run=True,
                        license="cc-by-4.0", validate=False)
    with pytest.raises(ValueError, match=r"openpose \(OpenPose academic non-commercial\).*--i-have-checked-licences"):
        publish(cfg, log=lambda _: None)
    # A non-commercial dataset licence, or the explicit flag, lets it through; the card has the table.
    for ok in (PublishConfig(**{**cfg.__dict__, "license": "cc-by-nc-4.0"}),
               PublishConfig(**{**cfg.__dict__, "i_have_checked_licences": True})):
        prepared, _ = publish(ok, log=lambda _: None)
        card = (prepared.path / "README.md").read_text()
        assert "## Weight licences" in card
        assert f"| openpose | openpose | OpenPose academic non-commercial | no | {licence_of('openpose').source} |" in card
        assert "| edge | hed_bsds | MIT | yes |" in card


def test_label_cli_suite_and_unknown_suite():
    import argparse

    from jobs.label import add_arguments, build_config

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cfg = build_config(parser.parse_args(["in", "out", "--suite", "permissive"]))
    assert "da3mono_large" in cfg.annotators and "openpose" not in cfg.annotators
    with pytest.raises(SystemExit, match="valid suites: joint, offline, permissive"):
        build_config(parser.parse_args(["in", "out", "--suite", "commercial"]))
