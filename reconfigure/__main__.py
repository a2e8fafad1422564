"""`python -m reconfigure` is the console script."""

from reconfigure.entry import main

raise SystemExit(main())
