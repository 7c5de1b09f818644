"""``baton``: one command, one subcommand per component.

Each subcommand lives with its component (``baton.<component>.cli:main``) and is imported only
when chosen, so ``baton sim`` does not pay for the gateway's imports and vice versa.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

COMMANDS: dict[str, tuple[str, str]] = {
    "sim": ("baton.exchange_sim.cli", "run the Binance-wire-compatible exchange simulator"),
    "gateway": (
        "baton.gateway.cli",
        "run the market gateway (clock, router, venue, ledger); `gateway handover`: hand the "
        "leader replica's term over",
    ),
    "strategy": ("baton.strategy.cli", "run a strategy host attached to a gateway"),
    "demo": ("baton.demo", "run simulator, gateway and strategy locally; print the report"),
    "presence": ("baton.gateway.report_cli", "print the presence report of a ledger file"),
    "handoff": ("baton.control.cli:handoff_main", "promote an instance: zero-gap handoff"),
    "instances": ("baton.control.cli:instances_main", "list a gateway's attached instances"),
    "retire": ("baton.control.cli:retire_main", "take a strategy out of a gateway's book"),
    "operator": ("baton.operator.cli", "run the Kubernetes operator (StrategyVersion rollouts)"),
}


#: ``baton <command> <sub>`` handled elsewhere than the command's own module.
SUBCOMMANDS: dict[tuple[str, str], str] = {
    ("gateway", "handover"): "baton.control.cli:gateway_handover_main",
}


def _usage() -> str:
    lines = ["usage: baton <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`baton <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"baton: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    target = COMMANDS[name][0]
    if rest and (name, rest[0]) in SUBCOMMANDS:
        target, rest = SUBCOMMANDS[(name, rest[0])], rest[1:]
    module_name, _, func = target.partition(":")
    module = importlib.import_module(module_name)
    entry: Callable[[list[str]], int] = getattr(module, func or "main")
    return entry(rest)


if __name__ == "__main__":
    raise SystemExit(main())
