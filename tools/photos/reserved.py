"""Sources kept for outside evaluation: refused wherever they appear.

Debian's ``mate-backgrounds`` and the sample images of the scikit-learn and matplotlib
wheels are never to be trained or tuned on: they are kept for judging the styles made
here from outside, which only means something if no network here has seen them
(docs/design/photos.md, "Reserved, never used"). This is a rule enforced in code, not one of the
hand-made lists: every reader (``sources``), ``fetch`` and ``collect`` call
``check_not_reserved`` on what they are given.
"""

from __future__ import annotations

import fnmatch

RESERVED_PACKAGES = {"mate-backgrounds", "scikit-learn", "sklearn", "matplotlib",
                     "python3-sklearn", "python3-matplotlib", "python-matplotlib-data"}
RESERVED_PREFIXES = ("mate-backgrounds", "scikit-learn", "scikit_learn", "matplotlib")
RESERVED_PATHS = (
    "*mate-backgrounds*", "*/backgrounds/mate/*", "*sklearn/datasets/images*",
    "*scikit_learn*", "*mpl-data/sample_data*", "*/matplotlib/sample_data*",
    "*matplotlib-*.whl*",
)


class ReservedSourceError(ValueError):
    """A source kept for outside evaluation was offered as training material."""


def check_not_reserved(source: str, original: str = "") -> None:
    """Raise ``ReservedSourceError`` for mate-backgrounds, scikit-learn or matplotlib data."""
    lowered_source = source.lower()
    if lowered_source in RESERVED_PACKAGES or lowered_source.startswith(RESERVED_PREFIXES):
        raise ReservedSourceError(f"{source} is reserved for outside evaluation")
    lowered = original.lower()
    for pattern in RESERVED_PATHS:
        if fnmatch.fnmatchcase(lowered, pattern):
            raise ReservedSourceError(f"{original} is reserved for outside evaluation")
