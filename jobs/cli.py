"""The `jodi` command: one subcommand per job module. Each module in jobs/ exposes
`add_arguments(parser)` and `run(args) -> int`; they are imported only when used so
`jodi --help` stays fast.

Failing is part of the interface: a user's mistake is one line on stderr, `jodi <command>: <why>`,
with exit code 2 (arguments, job file, input, resources, missing weights: the job could not start
as asked) or 1 (the job ran and failed, or found bad data). `jodi --verbose ...` (or `--verbose`
after the command) prints the full traceback instead, for bug reports, and lets Ray print its own logs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from pipeline.runtime import VERBOSE_ENV as RAY_LOGS_ENV

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

# Errors that mean "cannot start as asked" (exit 2) and "failed on the data or the run" (exit 1), as
# (module, class). Matched only when the module is already imported, so the CLI stays light.
USAGE_ERRORS = (
    ("jobs.cli", "UsageError"),
    ("pipeline.config", "ConfigError"),
    ("pipeline.preflight", "PreflightError"),
    ("pipeline.plan", "PlanError"),
    ("pipeline.sources", "InputError"),
    ("pipeline.job", "JobConfigError"),
    ("pipeline.lease", "LeaseHeldError"),
    ("schemas.storage", "StorageError"),
    ("common.hub", "ModelUnavailableError"),  # = annotators.loading, jodi.codecs (WeightsUnavailableError)
    ("jodi.eval.image", "MetricWeightsUnavailableError"),
    ("schemas.checkpoint", "UnsafeCheckpointError"),
    ("builtins", "FileNotFoundError"),
    ("builtins", "NotADirectoryError"),
    ("builtins", "IsADirectoryError"),
    ("builtins", "PermissionError"),
)
JOB_ERRORS = (
    ("pipeline.lease", "LeaseLostError"),
    ("schemas.storage", "StorageLostError"),
    ("schemas.joint", "JointFormatError"),
    ("schemas.paths", "UnsafePathError"),
    ("PIL.Image", "DecompressionBombError"),
    ("PIL", "UnidentifiedImageError"),
    ("builtins", "OSError"),
    ("builtins", "ValueError"),
)


class UsageError(ValueError):
    """A command-line value a job module cannot use (exit 2)."""


def _matches(exc: BaseException, table: tuple[tuple[str, str], ...]) -> bool:
    for module, name in table:
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            return True
    return False


def exit_code(exc: BaseException) -> int | None:
    """2 for a usage error, 1 for a failed job, None for anything else (a bug: show the traceback)."""
    if _matches(exc, USAGE_ERRORS):
        return 2
    if _matches(exc, JOB_ERRORS):
        return 1
    return None


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (KeyError's repr quotes dropped; whitespace runs collapsed)."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    return " ".join(text.split()) or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv
    argv = [a for a in argv if a != "--verbose"]
    parser = argparse.ArgumentParser(prog="jodi", description="The Jodi data engine.")
    parser.add_argument("--verbose", action="store_true", help="full traceback on failure (for bug reports)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser.print_help(sys.stdout if not argv or argv[0] in ("-h", "--help") else sys.stderr)
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    name = argv[0]
    module = importlib.import_module(COMMANDS[name][0])
    cmd = argparse.ArgumentParser(prog=f"jodi {name}", description=COMMANDS[name][1])
    module.add_arguments(cmd)
    cmd.add_argument("--verbose", action="store_true", help="full traceback on failure (for bug reports)")
    args = cmd.parse_args(argv[1:])  # a usage error exits 2 with argparse's own line
    args.verbose = verbose
    before = os.environ.get(RAY_LOGS_ENV)
    if verbose:
        os.environ[RAY_LOGS_ENV] = "1"  # pipeline/runtime.py then leaves Ray's own console output on
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print(f"jodi {name}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place every failure becomes a line and an exit code
        code = exit_code(exc)
        if verbose:
            traceback.print_exc()
        elif code is None:
            print(f"jodi {name}: unexpected {type(exc).__name__}: {one_line(exc)} "
                  "(rerun with --verbose for the full traceback and report it)", file=sys.stderr)
        else:
            print(f"jodi {name}: {one_line(exc)}", file=sys.stderr)
        return code or 1
    finally:
        if before is None:
            os.environ.pop(RAY_LOGS_ENV, None)  # main() is also called in-process (tests, jobs.label)
        else:
            os.environ[RAY_LOGS_ENV] = before


if __name__ == "__main__":
    raise SystemExit(main())
