"""`jodi validate PATH [--repair]`: check a Joint folder or Parquet shards (local or s3://, gs://); exit 1
when anything is wrong. On a label-job output `--repair` re-opens the finished shards whose files are
damaged or missing, so the next `jodi label` with the same arguments rebuilds them."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="a Joint folder (metadata.jsonl), Parquet shards, or a label job output")
    parser.add_argument("--max-records", type=int, help="check only the first N records of each layout")
    parser.add_argument("--max-problems", type=int, default=50, help="problems listed in full (default: 50)")
    parser.add_argument("--workers", type=int, help="threads decoding files (default: CPU count, at most 8)")
    parser.add_argument(
        "--repair",
        action="store_true",
        help="label-job output: re-open damaged shards so the next `jodi label` run rebuilds them",
    )


def run(args: argparse.Namespace) -> int:
    from pipeline.repair import damaged_shards, reopen
    from pipeline.validate import validate

    report = validate(args.path, max_records=args.max_records, workers=args.workers)
    damaged = damaged_shards(args.path) if report.is_label_output else {}
    for shard, why in damaged.items():
        report.add(f"shard-{shard:05d}", "damaged_shard", why)
    print(report.format(max_problems=args.max_problems))
    if damaged and args.repair:
        reopen(args.path, sorted(damaged))
        print(f"re-opened {len(damaged)} shards: rerun the same `jodi label` command to rebuild them")
    elif damaged:
        print(f"{len(damaged)} shards need rebuilding: run `jodi validate {args.path} --repair`, then the label job")
    return 0 if report.ok else 1
