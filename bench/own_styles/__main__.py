"""``python -m bench.own_styles``: see the package's docstring."""

from bench.own_styles import main

raise SystemExit(main())
