"""Contact sheet: one row per record (image, then each label domain), its captions underneath."""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterable, Sequence

from PIL import Image, ImageDraw, ImageFont

from schemas.domains import IMAGE, STORED_DOMAINS
from schemas.record import LabeledRecord

BACKGROUND = (255, 255, 255)
TILE_BACKGROUND = (235, 235, 235)
TEXT = (20, 20, 20)
MUTED = (120, 120, 120)
PAD = 4


def _font(size: int) -> ImageFont.ImageFont:
    # Pillow >= 10.1 ships a scalable default font; older builds without FreeType fall back to bitmap.
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def _blank(tile: int, font: ImageFont.ImageFont, text: str) -> Image.Image:
    canvas = Image.new("RGB", (tile, tile), TILE_BACKGROUND)
    ImageDraw.Draw(canvas).text((tile // 2, tile // 2), text, fill=MUTED, font=font, anchor="mm")
    return canvas


def _tile(data: bytes | None, tile: int, font: ImageFont.ImageFont, nearest: bool = False) -> Image.Image:
    """File bytes -> a tile x tile RGB thumbnail, aspect kept and centred; a marked blank for a missing label.
    Raises `Image.DecompressionBombError` from the header alone for a file over Pillow's pixel limit."""
    if data is None:
        return _blank(tile, font, "none")
    canvas = Image.new("RGB", (tile, tile), TILE_BACKGROUND)
    with Image.open(io.BytesIO(data)) as img:
        if img.width * img.height > (Image.MAX_IMAGE_PIXELS or float("inf")):  # Pillow only warns below 2x
            raise Image.DecompressionBombError(f"{img.width}x{img.height} pixels exceeds the preview's limit")
        img.draft("RGB", (tile, tile))  # JPEG: decode at reduced scale, much faster for 1024px files
        thumb = img.convert("RGB")
    # NEAREST for segmentation keeps palette colours exact; the others look better smoothed.
    thumb.thumbnail((tile, tile), Image.Resampling.NEAREST if nearest else Image.Resampling.BICUBIC)
    canvas.paste(thumb, ((tile - thumb.width) // 2, (tile - thumb.height) // 2))
    return canvas


def _wrap(draw: ImageDraw.ImageDraw, text: str, width: int, font: ImageFont.ImageFont, max_lines: int) -> list[str]:
    """Greedy word wrap to `width` pixels, at most `max_lines` lines (the last one ends with an ellipsis if cut)."""
    lines: list[str] = []
    current = ""
    # Only `max_lines` lines are shown: wrap a prefix (a 50 MB caption would exceed Pillow's 1M-character
    # limit on measured text, ImageFont.MAX_STRING_LENGTH) whose length no narrower glyphs could fill.
    text = text[: max_lines * (width + 1)]
    for word in text.split():
        candidate = f"{current} {word}".strip()
        if draw.textlength(candidate, font=font) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        current = word
        if len(lines) == max_lines:
            break
    if current and len(lines) < max_lines:
        lines.append(current)
    if len(lines) == max_lines and " ".join(lines) != " ".join(text.split()):
        while lines[-1] and draw.textlength(lines[-1] + "…", font=font) > width:
            lines[-1] = lines[-1][:-1]
        lines[-1] += "…"
    return lines


def contact_sheet(
    records: Iterable[LabeledRecord],
    n: int = 8,
    tile: int = 160,
    domains: Sequence[str] | None = None,
    caption_lines: int = 2,
    problems: list[str] | None = None,
) -> Image.Image:
    """PIL image of the first `n` records: a header row of domain names, then per record the image
    and each label domain (all domains present among them when `domains` is None), captions below.

    A file that cannot be shown (undecodable, over Pillow's pixel limit) becomes a tile marked
    "unreadable"; one line per such file, naming the record and domain, is appended to `problems`."""
    chosen = list(itertools.islice(records, n))
    if domains is None:
        present = {d for r in chosen for d in r.labels}
        domains = [d for d in STORED_DOMAINS if d in present]
    columns = [IMAGE, *domains]
    font = _font(max(10, tile // 13))
    line_h = font.getbbox("Ag")[3] + 2
    width = PAD + len(columns) * (tile + PAD)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    caption_blocks = [
        [
            line
            for model, text in sorted(r.captions.items())
            for line in _wrap(measure, f"{model}: {text}", width - 2 * PAD, font, caption_lines)
        ]
        for r in chosen
    ]
    header_h = line_h + 2 * PAD
    row_heights = [tile + PAD + len(block) * line_h + PAD for block in caption_blocks]
    sheet = Image.new("RGB", (width, header_h + sum(row_heights) + PAD), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for c, name in enumerate(columns):
        draw.text((PAD + c * (tile + PAD) + tile // 2, PAD + line_h // 2), name, fill=TEXT, font=font, anchor="mm")
    y = header_h
    for record, block, h in zip(chosen, caption_blocks, row_heights):
        for c, domain in enumerate(columns):
            data = record.image if domain == IMAGE else record.labels.get(domain)
            try:
                thumb = _tile(data, tile, font, nearest=domain == "seg_12colors")
            except (OSError, ValueError, Image.DecompressionBombError) as exc:  # PIL's errors for a bad file
                thumb = _blank(tile, font, "unreadable")
                if problems is not None:
                    problems.append(f"record {record.id}: {domain} not shown: {type(exc).__name__}: {exc}")
            sheet.paste(thumb, (PAD + c * (tile + PAD), y))
        for i, line in enumerate(block):
            draw.text((PAD, y + tile + PAD + i * line_h), line, fill=TEXT, font=font)
        y += h
    return sheet
