"""The Ray Dataset of decoded rows for the label job's input items.

Image files (a folder, a bucket prefix, a .txt list) are read by the decode actors themselves, one item
per row. Items inside containers (WebDataset tars, Parquet/Arrow dataset files) are grouped into read
units, one per container (or per slice of a Parquet file's rows), which Ray Data spreads over the decode
actors; each unit streams its container once, so no worker ever loads the whole corpus. Either way the
rows come out with `DecodeStage`'s columns, the same for every later stage.
"""

from __future__ import annotations

import math

from pipeline.config import LabelJobConfig
from pipeline.decode import DecodeRules
from pipeline.sources import InputItem, split_member
from pipeline.stages import DecodeSpec, DecodeStage, run_stage

# Rows of one Parquet read unit: a few row groups (datasets writes 100-row groups for image datasets),
# small enough to spread one big file over many workers.
PARQUET_UNIT_ROWS = 256
# Input rows per block of plain files (the unit Ray Data hands to a decode task or actor): 64, so a big
# corpus is not split into one block per 8 images (10k images: 1,250 blocks, each with its own task, ref
# and metadata in the driver; with 64 rows the driver's memory grows less and 10k images label faster,
# docs/benchmarks.md "Label job at scale"), but at least BLOCKS_PER_CPU blocks per cluster CPU while
# blocks of FILE_BLOCK_ROWS_MIN rows allow it, so a small job still spreads over every actor.
FILE_BLOCK_ROWS = 64
FILE_BLOCK_ROWS_MIN = 8
BLOCKS_PER_CPU = 4


def decoded_dataset(cfg: LabelJobConfig, todo: list[InputItem], remote_args: dict):
    """Ray Dataset with DecodeStage's columns for `todo` (items of one input, as `shard_items` made them).

    Decode runs as Ray tasks with `remote_args`: the job passes the first annotator stage's resources
    when it wants decode fused into that stage's actors (see `pipeline.job._decode_args`)."""
    import ray

    spec = DecodeSpec(
        rules=DecodeRules(cfg.min_short_side, cfg.target_short_side, cfg.max_pixels, cfg.allow_animated),
        sidecar_captions=cfg.sidecar_captions,
    )
    units = read_units_of(todo)
    if units is None:
        rows = [{"source": it.source, "shard": it.shard, "row": it.row, "caption_uri": it.caption_uri} for it in todo]
        blocks = file_blocks(len(rows), ray.cluster_resources().get("CPU", 1.0))
        ds = ray.data.from_items(rows, override_num_blocks=blocks)
        stage, kwargs, batch_size = DecodeStage, {"spec": spec}, 8
    else:
        from pipeline.containers import ContainerDecodeStage

        ds = ray.data.from_items(units, override_num_blocks=len(units))
        stage, batch_size = ContainerDecodeStage, 1
        kwargs = {"spec": spec, "image_column": cfg.hf_image_column, "caption_column": cfg.hf_caption_column}
    return ds.map_batches(
        run_stage,
        fn_kwargs={"stage": stage, "kwargs": kwargs},
        batch_size=batch_size,
        batch_format="numpy",
        **remote_args,
    )


def file_blocks(n: int, cpus: float) -> int:
    """Blocks for n plain-file rows: FILE_BLOCK_ROWS each, more (down to FILE_BLOCK_ROWS_MIN rows) on a big cluster."""
    few = math.ceil(n / FILE_BLOCK_ROWS)
    most = math.ceil(n / FILE_BLOCK_ROWS_MIN)
    return max(1, min(most, max(few, int(BLOCKS_PER_CPU * cpus))))


def read_units_of(todo: list[InputItem]) -> list[dict] | None:
    """Container members grouped into read units, in listing order; None when the items are plain files."""
    groups: dict[str, list[tuple[str, str, int]]] = {}
    plain = 0
    for it in todo:
        member = split_member(it.source)
        if member is None:
            plain += 1
        else:
            groups.setdefault(member[0], []).append((member[1], it.source, it.shard))
    if plain and groups:
        raise ValueError("one job reads one kind of input: plain files and container members were mixed")
    if not groups:
        return None
    units = []
    for container, members in groups.items():
        step = PARQUET_UNIT_ROWS if container.lower().endswith(".parquet") else len(members)
        for i in range(0, len(members), step):
            part = members[i : i + step]
            units.append(
                {
                    "container": container,
                    "members": [m for m, _, _ in part],
                    "sources": [s for _, s, _ in part],
                    "shards": [h for _, _, h in part],
                }
            )
    return units


def _actors(lo: int, hi: int):
    from ray.data import ActorPoolStrategy

    return ActorPoolStrategy(min_size=lo, max_size=hi)
