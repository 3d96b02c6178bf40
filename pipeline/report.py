"""What a finished label job reports: stats.json (counts, errors, caption statistics, stage times) and
the preview contact sheet. Both are rebuilt from the shard markers and Parquet shards, so a resumed
or incremental run reports the whole dataset, plus its own run's figures."""

from __future__ import annotations

import io
import json
from collections import Counter

from annotators.registry import licences_for
from pipeline.config import LabelJobConfig
from pipeline.writer import OutputLayout


def write_stats(cfg, layout: OutputLayout, shards: list[int], run: Counter, wall: float, skipped: int) -> dict:
    total: Counter = Counter()
    domains: Counter = Counter()
    captions: Counter = Counter()
    reasons: Counter = Counter()
    names: set[str] = set()
    for s in shards:
        m = json.loads(layout.storage.get_text(layout.marker(s)))
        total["records"] += m["records"]
        total["errors"] += m["errors"]
        domains.update(m["domains"])
        captions.update(m["captions"])
        reasons.update(m["error_reasons"])
        names.update(m.get("annotators", []))
    lines = layout.write_metadata(shards)
    stage_seconds = {k[2:]: round(v, 3) for k, v in sorted(run.items()) if k.startswith("t_")}
    stats = {
        "records_in": total["records"] + total["errors"],
        "records_out": total["records"],
        "errors": total["errors"],
        "errors_by_reason": dict(reasons),
        "per_domain": dict(domains),
        "licences": licences_for(sorted(names)),
        "captions": dict(captions),
        "caption_stats": caption_stats(layout, shards),
        "metadata_lines": lines,
        "shards": len(shards),
        "this_run": {
            "processed": run["processed"],
            "failed": run["failed"],
            "skipped_finished": skipped,
            "wall_seconds": round(wall, 3),
            "images_per_second": round(run["processed"] / wall, 3) if wall > 0 else 0.0,
            "stage_seconds": stage_seconds,
        },
    }
    layout.storage.put_text("stats.json", json.dumps(stats, indent=2, sort_keys=True))
    return stats


def caption_stats(layout: OutputLayout, shards: list[int]) -> dict:
    texts: dict[str, list[str]] = {}
    for s in shards:
        for caps in layout.read_data(s, ["caption"]).column("caption").to_pylist():
            for c in caps or []:
                texts.setdefault(c["model"], []).append(c["text"])
    if not texts:
        return {}
    try:
        from annotators.caption import caption_stats
    except ImportError:  # captioners not installed in this build
        return {k: {"count": len(v)} for k, v in texts.items()}
    return {k: caption_stats(v) for k, v in texts.items()}


def write_preview(cfg: LabelJobConfig, layout: OutputLayout) -> None:
    """OUT/preview.png: the first `preview_rows` records, every label side by side."""
    from pipeline.preview import contact_sheet
    from schemas.record import LabeledRecord

    records = []
    for s in sorted(layout.done_shards()):
        left = cfg.preview_rows - len(records)
        if left <= 0:
            break
        rows = layout.read_data(s).slice(0, left).to_pylist()
        records.extend(LabeledRecord.from_row(r) for r in rows)
    if records:
        buf = io.BytesIO()
        contact_sheet(records, n=len(records)).save(buf, format="PNG")
        layout.storage.put("preview.png", buf.getvalue())
