"""`jodi convert SRC DST --to parquet|joint`: Joint folder <-> Parquet shards."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="a Joint folder (--to parquet) or Parquet shards (--to joint)")
    parser.add_argument("dst", help="output folder (Parquet goes to DST/data/)")
    parser.add_argument("--to", required=True, choices=("parquet", "joint"), help="target layout")
    parser.add_argument(
        "--imagefolder",
        action="store_true",
        help="also write *_file_name keys so `datasets` loads the Joint folder as an ImageFolder",
    )


def run(args: argparse.Namespace) -> int:
    from pipeline.convert import convert
    from pipeline.precheck import check_joint_folder, check_parquet_ids

    # A bad line or an unsafe path fails here, naming it, before anything is written.
    check_joint_folder(args.src) if args.to == "parquet" else check_parquet_ids(args.src, args.dst)
    for split, stats in convert(args.src, args.dst, args.to, imagefolder=args.imagefolder).items():
        print(f"{split or '(no split)'}: {stats.records} records, {len(stats.files)} files written")
    return 0
