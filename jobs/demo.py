"""`make demo`: label the bundled sample corpus (real photographs from scikit-image) with a local Ray.

Offline by default: runs the annotators whose weights need no hub. `--full` runs the
whole Joint-1.6M suite (needs network access to download the models once).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path


def write_corpus(folder: Path) -> list[Path]:
    """Save the sample photographs as JPEG/PNG files, as a user's folder would hold them, each with its
    caption beside it (`astronaut.jpg` + `astronaut.txt`): the job keeps it under the `source` caption key."""
    from PIL import Image

    from pipeline.samples import CAPTIONS, PHOTOS, load_photo

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in PHOTOS:
        path = folder / f"{name}.{'png' if name in ('colorwheel', 'coins') else 'jpg'}"
        if not path.exists():
            Image.fromarray(load_photo(name)).save(path, quality=95)
        path.with_suffix(".txt").write_text(CAPTIONS[name] + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.demo", description=__doc__)
    parser.add_argument("--full", action="store_true", help="the full Joint suite (hub-backed models; needs network)")
    parser.add_argument("--output", default="out/demo")
    args = parser.parse_args(argv)

    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "0")
    logging.basicConfig(level=logging.WARNING)
    from annotators.registry import DOMAIN_DEFAULTS, OFFLINE_DEFAULTS
    from jobs.label import summary
    from pipeline.config import LabelJobConfig
    from pipeline.job import run_label_job
    from pipeline.runtime import init_ray

    corpus = Path(args.output).parent / "demo_input"
    write_corpus(corpus)
    offline = one_per_domain(OFFLINE_DEFAULTS)
    hub = [n for d, n in DOMAIN_DEFAULTS.items() if n not in offline]
    names = tuple(DOMAIN_DEFAULTS.values()) if args.full else offline
    if not args.full:
        print(
            f"demo: offline annotators {', '.join(offline)}; with network access, "
            f"`make demo DEMO_ARGS=--full` adds {', '.join(hub)}"
        )
    output = args.output + ("_full" if args.full else "")
    cfg = LabelJobConfig(
        input=str(corpus),
        output=output,
        annotators=names,
        min_short_side=256,
        target_short_side=512,
        shard_size=8,
        preview_rows=6,
    )
    init_ray(include_dashboard=False)
    stats = run_label_job(cfg, progress=True)
    print(summary(output, stats))
    return 0


def one_per_domain(names: tuple[str, ...]) -> tuple[str, ...]:
    """One offline annotator per domain: the registry's `offline` suite, restricted to `names`."""
    from annotators.registry import suite

    return tuple(n for n in suite("offline") if n in names)


if __name__ == "__main__":
    raise SystemExit(main())
