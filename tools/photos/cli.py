"""``python -m tools.photos``: fetch, collect, sheet (see the package's docstring)."""

from __future__ import annotations

import argparse
from pathlib import Path

import tools.photos
from tools.photos.curate import MAX_SIDE, collect, contact_sheet
from tools.photos.sources import all_candidates, fetch


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.photos",
                                     description=tools.photos.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    fetch_parser = sub.add_parser("fetch", help="apt-get download the Debian packages")
    fetch_parser.add_argument("debs", type=Path)
    collect_parser = sub.add_parser("collect", help="gather the offline colour photos")
    collect_parser.add_argument("dest", type=Path)
    collect_parser.add_argument("--debs", type=Path, help="a folder of the .deb files (fetch)")
    collect_parser.add_argument("--skimage-wheel", type=Path,
                                help="a scikit-image wheel (pip download --no-deps scikit-image)")
    collect_parser.add_argument("--max-side", type=int, default=MAX_SIDE,
                                help="shrink photos to this shorter side (default %(default)s)")
    sheet_parser = sub.add_parser("sheet", help="contact sheets of DEST/train and DEST/holdout")
    sheet_parser.add_argument("dest", type=Path)
    args = parser.parse_args(argv)

    if args.action == "fetch":
        debs = fetch(args.debs)
        print(f"{len(debs)} packages in {args.debs}")
        return
    if args.action == "sheet":
        for split in ("train", "holdout"):
            paths = sorted((args.dest / split).glob("*.*"))
            for start in range(0, len(paths), 100):
                out = args.dest / f"sheet-{split}-{start // 100}.png"
                print(contact_sheet(paths[start:start + 100], out))
        return
    if not args.debs and not args.skimage_wheel:
        parser.error("no photo source: pass --debs (python -m tools.photos fetch) "
                     "or --skimage-wheel")
    skipped: list = []
    candidates = list(all_candidates(args.debs, args.skimage_wheel,
                                     args.dest / "licences", skipped))
    report = collect(args.dest, candidates, max_side=args.max_side, pre_skipped=skipped)
    counts = report.counts
    per_source: dict[str, int] = {}
    for row in report.kept:
        per_source[row["source"]] = per_source.get(row["source"], 0) + 1
    print(f"{counts['train']} training photos in {args.dest / 'train'}, "
          f"{counts['holdout']} held out in {args.dest / 'holdout'}, "
          f"{counts['skipped']} files skipped (reasons in {args.dest / 'skipped.csv'}).")
    for source, count in per_source.items():
        print(f"  {source}: {count}")
    for key in report.missing_holdout:
        print(f"warning: held-out photo not found in the sources: {key}")
