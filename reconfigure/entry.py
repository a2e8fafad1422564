"""The console script. `health` takes a fast path through `health.py` alone (it runs every
minute in the container); every other command goes through the argument parser in cli.py."""

from __future__ import annotations

import sys


def main() -> int:
    if sys.argv[1:] == ["health"]:
        from reconfigure import health  # noqa: PLC0415

        return health.main()
    from reconfigure import cli  # noqa: PLC0415

    return cli.main()
