"""``baton presence --ledger PATH [--json]``: the presence report of any ledger file.

Safe on the ledger of a running gateway (read-only snapshot). Exit codes: 0 report printed,
2 bad usage or no readable ledger at PATH (one line on stderr saying why).
"""

from __future__ import annotations

import argparse
import json
import sys

from baton.gateway.ledger import LedgerError
from baton.gateway.report import format_report, presence_report, report_to_json


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="baton presence",
        description="Print the presence report of a Baton ledger: coverage per slot, missed "
        "evaluations, the longest gap, bets and win rate, per deployment.",
    )
    parser.add_argument("--ledger", required=True, metavar="PATH", help="the ledger file")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    return parser


def main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on usage errors
        return exc.code if isinstance(exc.code, int) else 2
    try:
        report = presence_report(args.ledger)
    except LedgerError as exc:
        print(f"baton presence: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report_to_json(report), indent=2))
    else:
        print(format_report(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
