"""``python -m mpjax``: the command line."""

from mpjax.cli.dispatch import main

raise SystemExit(main())
