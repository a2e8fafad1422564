"""`python -m reconfigure` is the console script."""

from reconfigure.cli import main

raise SystemExit(main())
