"""``baton presence --ledger PATH [--json] [--html FILE]``: the presence report of any ledger.

Safe on the ledger of a running gateway (read-only snapshot). ``--html FILE`` also writes the
presence timeline, one self-contained page (``baton.gateway.timeline``), from the same snapshot
as the report printed. Exit codes: 0 report printed, 2 bad usage, no readable ledger at PATH or
FILE not writable (one line on stderr saying why).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from baton.gateway.core.timeline_html import render_html
from baton.gateway.ledger import LedgerError
from baton.gateway.report import format_report, presence_report, report_to_json
from baton.gateway.timeline import read_timeline


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="baton presence",
        description="Print the presence report of a Baton ledger: coverage per slot, missed "
        "evaluations, the longest gap, bets and win rate, per deployment.",
    )
    parser.add_argument("--ledger", required=True, metavar="PATH", help="the ledger file")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.add_argument(
        "--html",
        metavar="FILE",
        help="also write the presence timeline to FILE: one HTML page, no network needed to "
        "view it",
    )
    return parser


def main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on usage errors
        return exc.code if isinstance(exc.code, int) else 2
    try:
        if args.html:
            report, timeline = read_timeline(args.ledger)
        else:
            report = presence_report(args.ledger)
    except LedgerError as exc:
        print(f"baton presence: {exc}", file=sys.stderr)
        return 2
    if args.html:
        try:
            Path(args.html).write_text(render_html(timeline), encoding="utf-8")
        except OSError as exc:
            print(f"baton presence: cannot write {args.html}: {exc}", file=sys.stderr)
            return 2
        # stderr: with --json, stdout stays one JSON document.
        print(f"baton presence: timeline written to {args.html}", file=sys.stderr)
    if args.json:
        print(json.dumps(report_to_json(report), indent=2))
    else:
        print(format_report(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
