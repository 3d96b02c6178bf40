"""`jodi preview PATH`: contact sheet PNG of N samples with all their domains and captions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="a Joint folder, Parquet shards, or a label job output")
    parser.add_argument("-o", "--output", default="preview.png", help="PNG to write (default: preview.png)")
    parser.add_argument("-n", "--samples", type=int, default=8, help="records to show (default: 8)")
    parser.add_argument("--tile", type=int, default=160, help="tile size in pixels (default: 160)")
    parser.add_argument("--split", help="split to read (default: all)")


def run(args: argparse.Namespace) -> int:
    from pipeline.preview import contact_sheet
    from schemas.joint import iter_records

    problems: list[str] = []  # files shown as "unreadable" tiles, one line each naming the record
    sheet = contact_sheet(iter_records(args.path, split=args.split), n=args.samples, tile=args.tile, problems=problems)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.output)
    for line in problems:
        print(f"jodi preview: {line} (`jodi validate {args.path}` lists every problem)", file=sys.stderr)
    print(f"wrote {args.output} ({sheet.width}x{sheet.height})")
    return 0
