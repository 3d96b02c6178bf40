"""`jodi publish OUTPUT --repo-id user/name [--private] [--dry-run]`: Parquet + card, then a Hub upload."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="a label job output, a Joint folder or a folder of Parquet shards")
    parser.add_argument("--repo-id", required=True, help="dataset repo on the Hub, e.g. user/my-joint-labels")
    parser.add_argument("--private", action="store_true", help="create the repo private")
    parser.add_argument("--dry-run", action="store_true", help="build and validate the folder; no network")
    parser.add_argument("--staging", help="upload folder to build (default: <source>-hub next to the source)")
    parser.add_argument("--license", default="other", help="license id for the card (default: other)")
    parser.add_argument("--pretty-name", help="title of the dataset card")
    parser.add_argument("--preview-samples", type=int, default=6, help="records in preview.png")
    parser.add_argument("--no-validate", action="store_true", help="skip decoding every record before upload")
    parser.add_argument("--i-have-checked-licences", action="store_true",
                        help="publish under a commercial licence even though some labels came from non-commercial weights")
    parser.add_argument("--json", action="store_true", help="print a JSON summary as the last line")


def run(args: argparse.Namespace) -> int:
    from pipeline.publish import PublishConfig, publish, summary_json

    cfg = PublishConfig(
        source=args.source,
        repo_id=args.repo_id,
        staging=args.staging,
        private=args.private,
        dry_run=args.dry_run,
        license=args.license,
        pretty_name=args.pretty_name,
        preview_samples=args.preview_samples,
        validate=not args.no_validate,
        i_have_checked_licences=args.i_have_checked_licences,
    )
    try:
        prepared, report = publish(cfg)
    except (RuntimeError, ValueError, OSError) as e:
        print(f"jodi publish: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(summary_json(prepared))
    return 0 if report.ok else 1
