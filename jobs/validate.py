"""`jodi validate PATH`: check a Joint folder or Parquet shards; exit 1 when anything is wrong."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="a Joint folder (metadata.jsonl), Parquet shards, or a label job output")
    parser.add_argument("--max-records", type=int, help="check only the first N records of each layout")
    parser.add_argument("--max-problems", type=int, default=50, help="problems listed in full (default: 50)")
    parser.add_argument("--workers", type=int, help="threads decoding files (default: CPU count, at most 8)")


def run(args: argparse.Namespace) -> int:
    from pipeline.validate import validate

    report = validate(args.path, max_records=args.max_records, workers=args.workers)
    print(report.format(max_problems=args.max_problems))
    return 0 if report.ok else 1
