"""A running handoff's I/O state, and the actions its machine returns carried out on the
instances (``Fleet``) and the router (``TakeOver``): all but FINISHED, which the coordinator
handles itself (it ends the handoff)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from baton.gateway.core import handoff as hm
from baton.gateway.handoff_trace import HandoffTrace
from baton.gateway.ports import Fleet, TakeOver
from baton.model import Role
from baton.v1 import gateway_pb2 as gw

log = logging.getLogger(__name__)


@dataclass
class Running:
    handoff: hm.Handoff
    snapshot: gw.StateSnapshot | None = None
    missed: int = 0
    first_green_tick: bool = False
    export_due: bool = False  # ExportState goes out right after the next tick's dispatch
    # Blue's journal, kept when blue went away mid-import (KEEP_JOURNAL); what the gateway
    # broadcasts meanwhile (settlements) is added, for green to replay after its import.
    kept_journal: list[gw.AttachResponse] | None = None
    journal_of_gone: list[gw.AttachResponse] | None = None  # blue's, handed over by on_gone
    trace: HandoffTrace | None = None  # its spans (none for a promotion with nothing to hand off)


def carry_out(running: Running, act: hm.Act, fleet: Fleet, takeover: TakeOver) -> None:
    h = running.handoff
    if act is hm.Act.REQUEST_IMPORT:
        assert running.snapshot is not None
        fleet.send_to(
            h.green,
            gw.AttachResponse(
                import_state=gw.ImportState(handoff_id=h.handoff_id, snapshot=running.snapshot)
            ),
        )
    elif act is hm.Act.START_SHADOW:
        if running.kept_journal is not None:
            journal, running.kept_journal = running.kept_journal, None
        else:
            journal = fleet.stop_journal(h.blue)
        fleet.make_shadow(h.green, journal)
    elif act is hm.Act.KEEP_JOURNAL:
        running.kept_journal = running.journal_of_gone or []
        log.warning(
            "blue went away mid-import; its journal is kept for green",
            extra={"handoff": h.handoff_id, "journaled": len(running.kept_journal)},
        )
    elif act is hm.Act.STOP_SHADOW:
        fleet.stop_journal(h.blue)
        fleet.set_role(h.green, Role.STANDBY)
    elif act is hm.Act.FLIP:
        fleet.stop_journal(h.blue)
        takeover.flip_to(h.green, previous_role=Role.SHADOW)
        running.first_green_tick = True
    elif act is hm.Act.HAND_BACK:
        takeover.flip_to(h.blue, previous_role=Role.STANDBY)
    elif act is hm.Act.DRAIN_BLUE:
        fleet.drain(h.blue, f"handoff {h.handoff_id} completed its bake window")
    elif act is hm.Act.RELEASE_GREEN:
        fleet.drain(h.green, f"handoff {h.handoff_id} rolled back: {h.message}")
