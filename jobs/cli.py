"""The `jodi` command: one subcommand per job module. Each module in jobs/ exposes
`add_arguments(parser)` and `run(args) -> int`; they are imported only when used so
`jodi --help` stays fast."""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "label": ("jobs.label", "label a folder, bucket, file list or HF dataset into a Joint-style dataset"),
    "publish": ("jobs.publish", "prepare Parquet shards + dataset card and upload to the Hugging Face Hub"),
    "validate": ("jobs.validate", "check a dataset (Joint folder or Parquet) and report every problem"),
    "preview": ("jobs.preview", "contact sheet PNG of samples with all their labels"),
    "convert": ("jobs.convert", "convert between the Joint folder layout and Parquet shards"),
    "generate": ("jobs.generate", "run a Jodi model: joint, controllable generation or perception"),
    "cache-latents": ("jobs.cache_latents", "encode images/labels/captions once for training"),
    "train": ("jobs.train", "fine-tune Jodi on Ray Train"),
    "eval": ("jobs.eval", "evaluate a Jodi checkpoint on a held-out split"),
    "eval-annotators": ("jobs.eval_annotators", "score annotators against ground-truth labels"),
    "e2e": ("jobs.e2e", "label -> cache latents -> train -> eval, one command"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="jodi", description="The Jodi data engine.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser.print_help()
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    name = argv[0]
    module = importlib.import_module(COMMANDS[name][0])
    cmd = argparse.ArgumentParser(prog=f"jodi {name}", description=COMMANDS[name][1])
    module.add_arguments(cmd)
    args = cmd.parse_args(argv[1:])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
