"""Client side of the gateway's ControlService, shared by the CLI, the demo and the operator."""

from baton.control.client import (
    TERMINAL_PHASES,
    ControlClient,
    ControlError,
    ledger_line,
    phase_name,
    role_name,
    step_line,
    summary_line,
)

__all__ = [
    "TERMINAL_PHASES",
    "ControlClient",
    "ControlError",
    "ledger_line",
    "phase_name",
    "role_name",
    "step_line",
    "summary_line",
]
