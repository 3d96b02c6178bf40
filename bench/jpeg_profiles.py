"""Bytes per record with each JPEG profile (schemas/codec.py), on Joint-1.6M's own samples.

    python bench/jpeg_profiles.py [JOINT_FOLDER]   # default:
    the official samples (docs/joint-format.md#official-samples)

Each official file (image and every label) is decoded and written again with each profile;
segmentation stays a lossless PNG either way.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from schemas.codec import JPEG_PROFILES, decode_file, encode_file  # noqa: E402


def main(folder: Path) -> None:
    rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines() if line.strip()]
    totals = {name: 0 for name in JPEG_PROFILES}
    for row in rows:
        files = {"image": row["image"], **{k.removeprefix("annotation_"): v for k, v in row.items()
                                            if k.startswith("annotation_")}}
        for domain, rel in files.items():
            data = (folder / rel).read_bytes()
            array = decode_file(data)
            for name in JPEG_PROFILES:
                totals[name] += len(encode_file(domain, array, name))
    for name, profile in JPEG_PROFILES.items():
        print(f"{name:6s} (q{profile.quality}, {'4:2:0' if profile.subsampling == 2 else '4:4:4'}): "
              f"{totals[name] / len(rows) / 1024:.0f} KiB per record over {len(rows)} records")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "joint_example")
