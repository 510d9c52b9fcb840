"""``python -m mpjax``: the command line."""

from mpjax.cli import main

raise SystemExit(main())
