"""Resolving relative paths from metadata safely inside a dataset root."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath


class UnsafePathError(ValueError):
    """A path from metadata points outside the dataset root."""


def resolve_inside(root: str | os.PathLike, relative: str) -> Path:
    """Join `relative` (as written in metadata.jsonl) onto `root`, refusing anything that escapes it.

    Rejects absolute paths, drive letters, `..` components and symlinks that resolve
    outside the root. Returns the resolved absolute path.
    """
    if not isinstance(relative, str) or not relative:
        raise UnsafePathError(f"empty or non-string path in metadata: {relative!r}")
    if "\x00" in relative:
        raise UnsafePathError(f"NUL byte in metadata path {relative!r}")
    pure = PurePosixPath(relative.replace("\\", "/"))
    if pure.is_absolute() or (pure.parts and pure.parts[0].endswith(":")):
        raise UnsafePathError(f"absolute path in metadata: {relative!r}")
    if ".." in pure.parts:
        raise UnsafePathError(f"path escapes the dataset root: {relative!r}")
    root_resolved = Path(root).resolve()
    target = (root_resolved / Path(*pure.parts)).resolve()
    if target != root_resolved and root_resolved not in target.parents:
        raise UnsafePathError(f"path resolves outside the dataset root (symlink?): {relative!r}")
    return target
