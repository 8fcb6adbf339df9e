"""``python -m bench.stylize_bench``: see the package's docstring."""

import sys

from .cli import main

sys.exit(main())
