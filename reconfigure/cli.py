"""Command line: parses arguments and calls the functions that do the work."""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from reconfigure import log, status
from reconfigure.files import atomic_write, read_or_none, under
from reconfigure.render import Rendered, render_tier
from reconfigure.rows import ScanFormatError, Skipped
from reconfigure.scanfile import load_items
from reconfigure.settings import SettingsError, from_env
from reconfigure.tiers import TIERS
from reconfigure.tree import TreeBuilder

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        """One line, not the whole usage text: this runs under supervisord."""
        self.exit(EXIT_USAGE, f"reconfigure: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="reconfigure", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    render = commands.add_parser("render", help="dry run: write a tier's text files under DIR")
    render.add_argument("--tier", required=True, choices=sorted(TIERS))
    render.add_argument("--scan-file", type=Path,
                        help="an `aws dynamodb scan --output json` file (default: the live table)")
    render.add_argument("--root", type=Path, required=True, help="directory to write under")
    render.add_argument("--diff", action="store_true",
                        help="print a unified diff against DIR instead of writing")
    commands.add_parser("run", help="the daemon: a cycle per SQS message batch or timer")
    once = commands.add_parser("once", help="one full cycle, then exit (non-zero on failure)")
    once.add_argument("--force", action="store_true",
                      help="apply even if the mass-deletion guard would refuse")
    commands.add_parser("health", help="exit 0 when the last cycle succeeded recently")
    return parser


def _summarise_skipped(skipped: Sequence[Skipped]) -> list[str]:
    reasons = Counter(s.rule for s in skipped)
    return [f"  {count:>7}  {rule}" for rule, count in sorted(reasons.items())]


def _diff(path: str, old: bytes | None, new: bytes) -> str:
    before = (old or b"").decode(errors="replace").splitlines(keepends=True)
    after = new.decode().splitlines(keepends=True)
    return "".join(difflib.unified_diff(
        before, after, fromfile=f"a{path}" if old is not None else "/dev/null",
        tofile=f"b{path}"))


def _write_or_diff(rendered: Rendered, root: Path, *, diff: bool) -> list[str]:
    report = []
    for path, data in rendered.files.items():
        target = under(root, path)
        old = read_or_none(target)
        if diff:
            text = _diff(path, old, data)
            if text:
                sys.stdout.write(text)
        elif old == data:
            report.append(f"unchanged {target}")
        else:
            atomic_write(target, data)
            report.append(f"wrote     {target}")
    return report


def render_command(args: argparse.Namespace, env: dict[str, str]) -> int:
    settings = from_env({**env, "TIER": args.tier}, need_aws=args.scan_file is None)
    builder = TreeBuilder()
    if args.scan_file is not None:
        skipped = builder.add(load_items(args.scan_file))
    else:
        from reconfigure.aws import Aws  # noqa: PLC0415 - boto3 only when the table is read

        skipped = Aws.from_settings(settings).scan_addresses(builder, settings.scan_segments)
    logger = log.get()
    for row in skipped:
        logger.warning("row skipped", address=row.address, rule=row.rule)
    rendered = render_tier(TIERS[settings.tier], builder.tree, settings.render_options())
    for line in rendered.dropped:
        logger.warning("duplicate map key dropped", path=line.path, line=line.line,
                       kept=line.kept)
    report = _write_or_diff(rendered, args.root, diff=args.diff)
    if not args.diff:
        print(f"rows read: {builder.rows}, skipped: {len(builder.skipped)}")
        print("\n".join(_summarise_skipped(builder.skipped) + report))
    return 0


def health_command(env: dict[str, str]) -> int:
    """For the container HEALTHCHECK: needs only the root, status file and interval."""
    settings = from_env({"TIER": "imap", "CERT_DOMAIN": "health.invalid", **env},
                        need_aws=False)
    current = status.load(settings.path(settings.status_file))
    healthy, message = status.health(current, now=time.time(), interval=settings.interval)
    print(message)
    return 0 if healthy else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    env = dict(os.environ)
    log.configure(sys.stderr if args.command == "render" else sys.stdout)
    try:
        if args.command == "render":
            return render_command(args, env)
        if args.command in ("once", "run"):
            # boto3 and requests are imported only by the commands that talk to AWS.
            from reconfigure import service  # noqa: PLC0415

            settings = from_env(env)
            return (service.once(settings, force=args.force) if args.command == "once"
                    else service.run(settings, env))
        return health_command(env)
    except (SettingsError, ScanFormatError) as error:
        print(f"reconfigure: {error}", file=sys.stderr)
        return EXIT_USAGE
