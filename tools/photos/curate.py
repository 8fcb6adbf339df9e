"""Which candidates are kept: the heuristic filters, the hand-made skips and hold-outs,
near-duplicates; and ``collect``, which writes the kept photos and the manifests."""

from __future__ import annotations

import csv
import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ml.images import IMAGE_SUFFIXES
from tools.photos.lists import HOLDOUT, SKIP
from tools.photos.reserved import check_not_reserved
from tools.photos.sources import Candidate

MIN_SIDE = 256  # shorter side of a usable photo, in pixels
MAX_SIDE = 512  # photos are shrunk to this shorter side when written
JPEG_QUALITY = 92
PHASH_DISTANCE = 12  # of 64 bits: at most this far apart is "the same photo"


def skip_reason(key: str, skips: dict[str, str] = SKIP) -> str | None:
    for pattern, reason in skips.items():
        if fnmatch.fnmatchcase(key, pattern):
            return reason
    return None


# --------------------------------------------------------------------------- filters


def _thumbnail(image: Image.Image, short_side: int = 256) -> np.ndarray:
    rgb = image.convert("RGB")
    scale = short_side / min(rgb.size)
    size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    return np.asarray(rgb.resize(size, Image.Resampling.BOX), dtype=np.float32)


def photo_problem(image: Image.Image, min_side: int = MIN_SIDE) -> str | None:
    """Why ``image`` is not a usable colour photograph, or None if it may be one.

    Catches what a heuristic can: small images, transparency (cut-outs and stickers),
    greyscale, and drawings, logos, charts and gradients (few colours, large flat areas,
    little texture). Renders and paintings pass: those are in the hand-made skip.txt.
    """
    if min(image.size) < min_side:
        return f"too small ({image.width}x{image.height}, shorter side under {min_side})"
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        alpha = np.asarray(image.convert("RGBA").getchannel("A"))
        if (alpha < 250).mean() > 0.01:
            return "transparent background (a cut-out or a drawing)"
    pixels = _thumbnail(image)
    chroma = float(np.abs(pixels - pixels.mean(axis=2, keepdims=True)).mean())
    if chroma < 4.0:
        return "greyscale or nearly"
    codes = (pixels // 8).astype(np.int32) @ np.array([1024, 32, 1])
    _, counts = np.unique(codes, return_counts=True)
    if len(counts) < 200 or np.sort(counts)[::-1][:16].sum() > 0.85 * codes.size:
        return "few colours (a drawing, logo or chart)"
    grey = pixels.mean(axis=2)
    laplacian = np.abs(4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1]
                       - grey[1:-1, :-2] - grey[1:-1, 2:])
    if (laplacian < 0.5).mean() > 0.45:
        return "large flat areas (a drawing, render or gradient)"
    rows, cols = grey.shape[0] // 16, grey.shape[1] // 16
    tiles = grey[:rows * 16, :cols * 16].reshape(rows, 16, cols, 16).std(axis=(1, 3))
    if (tiles > 4.0).mean() < 0.15:
        return "almost no texture (a gradient or blurred render)"
    return None


def is_colour_photo(image: Image.Image) -> bool:
    """A photo worth training on: big enough, opaque, in colour, with texture."""
    return photo_problem(image) is None


_DCT = np.cos(np.pi * np.outer(np.arange(8), 2 * np.arange(32) + 1) / 64)  # DCT-II rows


def phash(image: Image.Image) -> int:
    """A 64-bit perceptual hash: signs of the 8x8 lowest DCT frequencies of a 32x32 grey.

    Resolution, JPEG/WebP re-encoding and light/dark variants of one picture land a few
    bits apart; different photos land about 32 apart.
    """
    grey = np.asarray(image.convert("L").resize((32, 32), Image.Resampling.BOX), np.float64)
    coefficients = _DCT @ grey @ _DCT.T
    flat = coefficients.flatten()
    bits = flat > np.median(flat[1:])
    return int("".join("1" if bit else "0" for bit in bits), 2)


def hamming(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


# --------------------------------------------------------------------------- collect


@dataclass
class Report:
    kept: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    missing_holdout: list[str] = field(default_factory=list)  # HOLDOUT keys never offered

    @property
    def counts(self) -> dict[str, int]:
        train = sum(row["split"] == "train" for row in self.kept)
        return {"train": train, "holdout": len(self.kept) - train, "skipped": len(self.skipped)}


MANIFEST_FIELDS = ("file", "split", "source", "version", "original", "licence",
                   "width", "height", "phash")
SKIPPED_FIELDS = ("source", "original", "reason")


def _shrink(image: Image.Image, max_side: int) -> Image.Image:
    image = image.convert("RGB")
    if min(image.size) > max_side:
        scale = max_side / min(image.size)
        size = (max(max_side, round(image.width * scale)),
                max(max_side, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return image


def collect(dest: Path, sources: Iterable[Candidate], holdout: set[str] = HOLDOUT,
            skips: dict[str, str] = SKIP, max_side: int = MAX_SIDE,
            pre_skipped: Iterable[tuple[str, str, str]] = ()) -> Report:
    """Write the kept photos under ``dest/train`` and ``dest/holdout``, and the manifests.

    Held-out candidates are looked at first, so that a near-duplicate of a held-out
    photo is the one left out, never the held-out photo itself. Earlier candidates win
    otherwise. Previous photos in both folders are removed first.
    """
    dest = Path(dest)
    candidates = list(sources)
    for candidate in candidates:
        check_not_reserved(candidate.source, candidate.original)
    candidates.sort(key=lambda c: c.key not in holdout)  # stable: held-out first
    for split in ("train", "holdout"):
        folder = dest / split
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            if old.is_file() and old.suffix.lower() in IMAGE_SUFFIXES:
                old.unlink()
    offered = {candidate.key for candidate in candidates}
    report = Report(missing_holdout=sorted(set(holdout) - offered))
    for source, original, reason in pre_skipped:
        report.skipped.append({"source": source, "original": original, "reason": reason})
    hashes: list[tuple[int, str]] = []
    names: set[str] = set()
    for candidate in candidates:
        def skip(reason: str, candidate=candidate) -> None:
            report.skipped.append({"source": candidate.source, "original": candidate.original,
                                   "reason": reason})

        reason = skip_reason(candidate.key, skips)
        if reason and candidate.key not in holdout:
            skip(f"hand-skipped: {reason}")
            continue
        try:
            image = candidate.load()
            image.load()
        except Exception as error:  # Pillow raises many types for bad files
            skip(f"unreadable: {type(error).__name__}: {error}")
            continue
        problem = photo_problem(image)
        if problem:
            skip(problem)
            continue
        digest = phash(image)
        twin = next((name for other, name in hashes if hamming(digest, other) <= PHASH_DISTANCE),
                    None)
        if twin:
            skip(f"near-duplicate of {twin}")
            continue
        split = "holdout" if candidate.key in holdout else "train"
        name = candidate.name
        for number in range(2, 1000):
            if name not in names:
                break
            name = f"{candidate.name}-{number}"
        names.add(name)
        file = f"{name}.png" if split == "holdout" else f"{name}.jpg"
        output = _shrink(image, max_side)
        if split == "holdout":
            output.save(dest / split / file)
        else:
            output.save(dest / split / file, quality=JPEG_QUALITY)
        hashes.append((digest, f"{split}/{file}"))
        report.kept.append({
            "file": f"{split}/{file}", "split": split, "source": candidate.source,
            "version": candidate.version, "original": candidate.original,
            "licence": candidate.licence, "width": image.width, "height": image.height,
            "phash": f"{digest:016x}",
        })
    _write_csv(dest / "manifest.csv", MANIFEST_FIELDS, report.kept)
    _write_csv(dest / "skipped.csv", SKIPPED_FIELDS, report.skipped)
    return report


def _write_csv(path: Path, fields, rows) -> None:
    with open(path, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


# --------------------------------------------------------------------------- sheets


def contact_sheet(paths: list[Path], out: Path, cell: int = 160, columns: int = 10) -> Path:
    """One PNG with a labelled thumbnail of each image, to look at what was kept."""
    rows = max(1, -(-len(paths) // columns))
    sheet = Image.new("RGB", (columns * cell, rows * (cell + 14)), "white")
    draw = ImageDraw.Draw(sheet)
    for index, path in enumerate(paths):
        with Image.open(path) as image:
            thumb = image.convert("RGB")
            thumb.thumbnail((cell - 4, cell - 4))
        row, column = divmod(index, columns)
        x, y = column * cell, row * (cell + 14)
        sheet.paste(thumb, (x + (cell - thumb.width) // 2, y + (cell - thumb.height) // 2))
        draw.text((x + 2, y + cell), Path(path).stem[:26], fill="black")
    sheet.save(out)
    return out
