"""What the control service reports: the instances attached to a gateway and the status of a
handoff. The gateway builds these from its own state; the operator and the CLI read them back
(``baton.wire`` converts both ways)."""

from __future__ import annotations

from dataclasses import dataclass

from baton.model._evaluation import Role
from baton.model._handoff import HandoffPhase


@dataclass(frozen=True, slots=True)
class InstanceStatus:
    """One strategy instance attached to the gateway."""

    instance_id: str
    pod_name: str
    strategy: str
    version: str
    state_schema: int
    role: Role
    attached_ms: int


@dataclass(frozen=True, slots=True)
class HandoffStep:
    """One step of a handoff, as it happened: ``export``, ``import``, ``shadow``, ``flip``..."""

    name: str
    t_ms: int
    detail: str = ""


@dataclass(frozen=True, slots=True)
class HandoffStatus:
    """A handoff as reported to the operator and the CLI. A figure that was never measured is
    None (no pause: green never took a tick; no transfer: nothing was imported)."""

    handoff_id: str
    strategy: str
    from_instance: str  # blue ("" when nothing was ACTIVE)
    to_instance: str  # green
    from_version: str
    to_version: str
    phase: HandoffPhase
    message: str = ""  # why it aborted or rolled back
    epoch_before: int = 0
    epoch_after: int = 0  # 0 until the flip
    state_bytes: int = 0
    export_digest: str = ""
    import_digest: str = ""
    migrated_digest: str = ""
    pause_ms: float | None = None  # green's first ACTIVE tick, dispatch against schedule
    missed: int = 0  # evaluations missed between start and end
    divergences: int = 0
    compared: int = 0  # green's shadow decisions compared with blue's
    steps: tuple[HandoffStep, ...] = ()
    started_ms: int = 0
    finished_ms: int | None = None
    transfer_ms: float | None = None  # export requested -> import confirmed

    @property
    def epoch(self) -> int:
        """The epoch the handoff left the gateway in."""
        return self.epoch_after or self.epoch_before
