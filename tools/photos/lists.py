"""The hand-made lists, kept as data files beside the code and read here.

``skip.txt``: fnmatch patterns over "package:original path" left out by hand, under
``[reason]`` lines; ``holdout.txt``: the keys kept out of training; ``opencv-tutorial-
photos.txt``: the opencv-doc tutorial images taken; ``skimage-photos.txt``: the
scikit-image photos taken, each with its licence. In all of them a line starting with
``#`` is a comment and blank lines are ignored. A malformed or repeated entry raises
``ValueError`` naming the file and line.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def entries(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped line) of each line of ``path`` that is not blank or a comment."""
    found = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            found.append((number, line))
    return found


def _refuse_repeats(path: Path, numbered: list[tuple[int, str]]) -> None:
    seen: set[str] = set()
    for number, entry in numbered:
        if entry in seen:
            raise ValueError(f"{path}:{number}: {entry!r} is listed twice")
        seen.add(entry)


def read_skips(path: Path) -> dict[str, str]:
    """Pattern -> reason, in file order (the first matching pattern wins)."""
    skips: dict[str, str] = {}
    reason = None
    patterns = []
    for number, line in entries(path):
        if line.startswith("[") and line.endswith("]"):
            reason = line[1:-1].strip()
        elif reason is None:
            raise ValueError(f"{path}:{number}: a pattern before any [reason] line")
        else:
            patterns.append((number, line))
            skips[line] = reason
    _refuse_repeats(path, patterns)
    return skips


def read_keys(path: Path) -> list[str]:
    """One "package:original path" key a line."""
    numbered = entries(path)
    for number, line in numbered:
        if ":" not in line:
            raise ValueError(f"{path}:{number}: not a 'package:original path' key: {line!r}")
    _refuse_repeats(path, numbered)
    return [line for _, line in numbered]


def read_lines(path: Path) -> list[str]:
    numbered = entries(path)
    _refuse_repeats(path, numbered)
    return [line for _, line in numbered]


def read_licences(path: Path) -> dict[str, str]:
    """File name -> licence, from lines of a name, spaces, then the licence."""
    numbered = entries(path)
    licences: dict[str, str] = {}
    for number, line in numbered:
        name, *licence = line.split(None, 1)
        if not licence:
            raise ValueError(f"{path}:{number}: a file name without its licence: {line!r}")
        licences[name] = licence[0]
    _refuse_repeats(path, [(number, line.split()[0]) for number, line in numbered])
    return licences


#: fnmatch pattern over "package:original path" -> why it is left out.
SKIP: dict[str, str] = read_skips(HERE / "skip.txt")
#: "package:original path" of each photo kept out of training.
HOLDOUT: set[str] = set(read_keys(HERE / "holdout.txt"))
#: globs under /usr/share/doc/opencv-doc/ of the tutorial photos taken.
OPENCV_TUTORIAL_PHOTOS: tuple[str, ...] = tuple(read_lines(HERE / "opencv-tutorial-photos.txt"))
#: file name under skimage/data/ -> licence.
SKIMAGE_PHOTOS: dict[str, str] = read_licences(HERE / "skimage-photos.txt")
