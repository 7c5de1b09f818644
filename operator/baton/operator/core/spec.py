"""A StrategyVersion's spec, parsed and validated once into frozen data.

The CRD's schema already rejects bad specs at ``kubectl apply`` time. The operator checks again
here because it cannot trust that every object it reads went through the current schema (an
object stored before a schema change, a CRD installed without validation): a spec that fails here
fails its rollout with a status naming the field, instead of crashing a handler.
Defaults are the CRD's defaults, so an object written without them behaves the same.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from baton.model import (
    SLOT_ID_HINT,
    HandoffPolicy,
    StandbyMode,
    StandbyPolicy,
    check_slot_ids,
    is_slot_id,
)

GROUP = "baton.dev"
VERSION = "v1alpha1"
PLURAL = "strategyversions"
KIND = "StrategyVersion"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_ENTRYPOINT = re.compile(
    r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
)
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
# A label value (so the version can label pods and metrics): no spaces, no '+' or '/'.
_VERSION = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
# Kubernetes' resource.Quantity, as its OpenAPI schema gives it, without the sign: a container's
# requests and limits must not be negative. The CRD checks the same with CEL isQuantity().
_QUANTITY = re.compile(
    r"^\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
QUANTITY_HINT = "must be a non-negative quantity, e.g. 250m, 1.5, 512Mi or 2Gi"
VERSION_HINT = (
    "must be a version label: letters, digits, '-', '_' and '.', beginning and ending with a "
    "letter or digit, e.g. v2 or 1.4.0-rc.1"
)


E = TypeVar("E", bound=enum.Enum)


class SpecError(ValueError):
    """A spec the operator will not run; the message names the field."""


class HandoffMode(enum.Enum):
    STATE_TRANSFER = "StateTransfer"
    SWAP = "Swap"  # flip without moving state: the baseline, state is lost


class DeletionPolicy(enum.Enum):
    PROTECT = "Protect"  # deleting the ACTIVE version with no successor is refused
    ALLOW = "Allow"


# The handoff defaults are the model's (the gateway applies the same ones); the CRD's schema
# states them again for `kubectl explain`, and tests/unit/test_handoff_defaults.py keeps it equal.
_POLICY = HandoffPolicy()


@dataclass(frozen=True)
class HandoffSpec:
    """``spec.handoff``, in the CRD's units (seconds, a mode)."""

    mode: HandoffMode = (
        HandoffMode.SWAP if _POLICY.skip_state_transfer else HandoffMode.STATE_TRANSFER
    )
    shadow_ticks: int = _POLICY.shadow_ticks
    bake_s: float = _POLICY.bake_ms / 1000
    auto_rollback: bool = _POLICY.auto_rollback
    max_divergence: int | None = _POLICY.max_divergence
    max_bake_faults: int = _POLICY.max_bake_faults
    step_timeout_s: float = _POLICY.step_timeout_ms / 1000

    def policy(self) -> HandoffPolicy:
        """The policy to ask the gateway for: every field, as the spec (or its default) says."""
        return HandoffPolicy(
            shadow_ticks=self.shadow_ticks,
            max_divergence=self.max_divergence,
            bake_ms=round(self.bake_s * 1000),
            auto_rollback=self.auto_rollback,
            max_bake_faults=self.max_bake_faults,
            step_timeout_ms=round(self.step_timeout_s * 1000),
            skip_state_transfer=self.mode is HandoffMode.SWAP,
        )


class StandbyKind(enum.Enum):
    """``spec.standby.mode``, as the CRD spells it; ``mode`` is the model's."""

    HOT = "Hot"  # a second pod of this version follows the ACTIVE and takes over at once
    CHECKPOINT = "Checkpoint"  # the gateway checkpoints the state; a new instance replays it
    NONE = "None"  # neither: a new instance starts with an empty state

    @property
    def mode(self) -> StandbyMode:
        return StandbyMode(self.value.lower())

    @classmethod
    def of(cls, mode: StandbyMode) -> StandbyKind:
        return cls(mode.value.capitalize())


# The standby defaults are the model's too (the gateway applies them to a Hello without a
# policy); the CRD states them again and tests/unit/test_handoff_defaults.py keeps them equal.
_STANDBY = StandbyPolicy()
_STANDBY_KIND = StandbyKind.of(_STANDBY.mode)
#: Upper bounds the CRD states again (``spec.standby``'s maxima): sanity, not the gateway's.
MAX_CHECKPOINT_EVERY_TICKS = 100_000
MAX_CHECKPOINTS_KEPT = 100
MAX_VERIFY_EVERY_TICKS = 100_000


@dataclass(frozen=True)
class StandbySpec:
    """``spec.standby``: what keeps the strategy's state when its ACTIVE instance dies."""

    mode: StandbyKind = _STANDBY_KIND
    checkpoint_every_ticks: int = _STANDBY.checkpoint_every_ticks
    checkpoints_kept: int = _STANDBY.checkpoints_kept
    verify_every_ticks: int = _STANDBY.verify_every_ticks

    @property
    def hot(self) -> bool:
        """A hot standby: the operator runs a second pod of the version."""
        return self.mode is StandbyKind.HOT

    def policy(self) -> StandbyPolicy:
        """The policy the strategy host sends in its Hello (the pod's flags)."""
        return StandbyPolicy(
            mode=self.mode.mode,
            checkpoint_every_ticks=self.checkpoint_every_ticks,
            checkpoints_kept=self.checkpoints_kept,
            verify_every_ticks=self.verify_every_ticks,
        )


@dataclass(frozen=True)
class StartupSpec:
    timeout_s: float = 120.0
    max_restarts: int = 2


@dataclass(frozen=True)
class BookShape:
    """A strategy's part of the gateway's book: the slot ids it evaluates (empty: every slot of
    the gateway) and its stake per bet (None: the gateway's venue.stake). Every instance of a
    strategy must ask for the same; the gateway refuses another one."""

    slots: tuple[str, ...] = ()
    stake: float | None = None

    def unlike(self, running: BookShape) -> str:
        """Why an instance of this shape cannot join a strategy running with ``running`` ("" if
        it can). Compared as the gateway compares them: slots as sets, the stake as asked (unset
        is "the gateway's venue.stake", which is not the same ask as any set stake, even one of
        the same value: the gateway's default may change)."""
        why = []
        if set(self.slots) != set(running.slots):
            why.append(f"slots {_shown(self.slots)} (running: {_shown(running.slots)})")
        if self.stake != running.stake:
            why.append(f"stake {_stake_shown(self.stake)} (running: {_stake_shown(running.stake)})")
        return " and ".join(why)


def _stake_shown(stake: float | None) -> str:
    return "the gateway's default" if stake is None else f"{stake:g}"


def _shown(slots: tuple[str, ...]) -> str:
    return ",".join(slots) if slots else "all the gateway's"


@dataclass(frozen=True)
class StrategyVersionSpec:
    strategy: str
    version: str
    image: str
    entrypoint: str
    config_json: str = "{}"  # canonical JSON, handed to the strategy host as --config
    env: tuple[tuple[str, str], ...] = ()
    resources: Mapping[str, Mapping[str, str]] | None = None
    handoff: HandoffSpec = HandoffSpec()
    standby: StandbySpec = StandbySpec()
    startup: StartupSpec = StartupSpec()
    deletion_policy: DeletionPolicy = DeletionPolicy.PROTECT
    # The strategy's part of the gateway's book, sent in its Hello: the slot ids it evaluates
    # (empty: every slot of the gateway) and its stake per bet (None: the gateway's venue.stake).
    slots: tuple[str, ...] = ()
    stake: float | None = None

    @property
    def shape(self) -> BookShape:
        return BookShape(self.slots, self.stake)


#: Bounds the CRD states again (``spec.slots``' maxItems, ``spec.stake``'s maximum).
MAX_SLOTS = 20_000  # the gateway's own limit of slots (gateway.config.MAX_SLOTS)
MAX_STAKE = 1_000_000.0


def _str(raw: Mapping[str, Any], key: str, path: str, *, max_len: int) -> str:
    value = raw.get(key)
    if value is None or value == "":
        raise SpecError(f"{path}.{key}: required")
    if not isinstance(value, str):
        raise SpecError(f"{path}.{key}: must be a string, got {type(value).__name__}")
    if len(value) > max_len:
        raise SpecError(f"{path}.{key}: longer than {max_len} characters")
    return value


def _number(
    raw: Mapping[str, Any], key: str, path: str, default: float, *, positive: bool, maximum: float
) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(f"{path}.{key}: must be a number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise SpecError(f"{path}.{key}: must be {'> 0' if positive else '>= 0'}, got {value}")
    if value > maximum:
        raise SpecError(f"{path}.{key}: must be <= {maximum:g}, got {value}")
    return float(value)


def _int(
    raw: Mapping[str, Any],
    key: str,
    path: str,
    default: int,
    *,
    minimum: int,
    maximum: int | None = None,
) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{path}.{key}: must be an integer, got {value!r}")
    if value < minimum:
        raise SpecError(f"{path}.{key}: must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise SpecError(f"{path}.{key}: must be <= {maximum}, got {value}")
    return value


def _section(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, Mapping):
        raise SpecError(f"spec.{key}: must be an object")
    return value


def _enum(cls: type[E], raw: Mapping[str, Any], key: str, path: str, default: E) -> E:
    value = raw.get(key, default.value)
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in cls)
        raise SpecError(f"{path}.{key}: unknown value {value!r} (supported: {allowed})") from None


def _handoff(raw: Mapping[str, Any]) -> HandoffSpec:
    p = "spec.handoff"
    d = HandoffSpec()
    max_divergence = raw.get("maxDivergence")
    if max_divergence is not None:
        max_divergence = _int(raw, "maxDivergence", p, 0, minimum=0)
    auto_rollback = raw.get("autoRollback", d.auto_rollback)
    if not isinstance(auto_rollback, bool):
        raise SpecError(f"{p}.autoRollback: must be true or false")
    return HandoffSpec(
        mode=_enum(HandoffMode, raw, "mode", p, d.mode),
        shadow_ticks=_int(raw, "shadowTicks", p, d.shadow_ticks, minimum=1),
        bake_s=_number(raw, "bakeSeconds", p, d.bake_s, positive=False, maximum=86400),
        auto_rollback=auto_rollback,
        max_divergence=max_divergence,
        max_bake_faults=_int(raw, "maxBakeFaults", p, d.max_bake_faults, minimum=0),
        step_timeout_s=_number(
            raw, "stepTimeoutSeconds", p, d.step_timeout_s, positive=True, maximum=3600
        ),
    )


def _standby(raw: Mapping[str, Any]) -> StandbySpec:
    p = "spec.standby"
    d = StandbySpec()
    return StandbySpec(
        mode=_enum(StandbyKind, raw, "mode", p, d.mode),
        checkpoint_every_ticks=_int(
            raw,
            "checkpointEveryTicks",
            p,
            d.checkpoint_every_ticks,
            minimum=1,
            maximum=MAX_CHECKPOINT_EVERY_TICKS,
        ),
        checkpoints_kept=_int(
            raw, "checkpointsKept", p, d.checkpoints_kept, minimum=1, maximum=MAX_CHECKPOINTS_KEPT
        ),
        verify_every_ticks=_int(
            raw,
            "verifyEveryTicks",
            p,
            d.verify_every_ticks,
            minimum=0,
            maximum=MAX_VERIFY_EVERY_TICKS,
        ),
    )


def _env(raw: Any) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise SpecError("spec.env: must be a list of {name, value}")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise SpecError(f"spec.env[{i}]: must be an object with a string name")
        if not _ENV_NAME.match(item["name"]):
            raise SpecError(f"spec.env[{i}].name: {item['name']!r} is not a valid variable name")
        value = item.get("value", "")
        if not isinstance(value, str):
            raise SpecError(f"spec.env[{i}].value: must be a string")
        out.append((item["name"], value))
    return tuple(out)


def _resources(raw: Any) -> Mapping[str, Mapping[str, str]] | None:
    if not raw:
        return None
    if not isinstance(raw, Mapping):
        raise SpecError("spec.resources: must be an object")
    out: dict[str, dict[str, str]] = {}
    for kind in ("requests", "limits"):
        values = raw.get(kind) or {}
        if not isinstance(values, Mapping):
            raise SpecError(f"spec.resources.{kind}: must be an object")
        out[kind] = {str(k): _quantity(v, f"spec.resources.{kind}[{k}]") for k, v in values.items()}
    return out


def _quantity(value: Any, path: str) -> str:
    """A resource quantity as the pod takes it. Checked here so that a bad one fails the rollout
    with the spec's field named, instead of the pod create failing later."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, str) and len(value) <= 64 and _QUANTITY.match(value):
        return value
    raise SpecError(f"{path}: {value!r} {QUANTITY_HINT}")


def _slots(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise SpecError(f"spec.slots: must be a list of slot ids, got {type(raw).__name__}")
    if len(raw) > MAX_SLOTS:
        raise SpecError(f"spec.slots: more than {MAX_SLOTS} slots")
    for i, value in enumerate(raw):
        if not is_slot_id(value):
            raise SpecError(f"spec.slots[{i}]: {value!r} {SLOT_ID_HINT}")
    try:
        return check_slot_ids(raw)
    except ValueError as exc:  # only a repeated one is left
        raise SpecError(f"spec.slots: {exc}") from None


def _stake(raw: Any) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise SpecError(f"spec.stake: must be a number, got {raw!r}")
    if raw <= 0:
        raise SpecError(f"spec.stake: must be > 0, got {raw}")
    if raw > MAX_STAKE:
        raise SpecError(f"spec.stake: must be <= {MAX_STAKE:g}, got {raw}")
    return float(raw)


def parse_spec(raw: Mapping[str, Any]) -> StrategyVersionSpec:
    """Validate ``.spec`` of a StrategyVersion; raise ``SpecError`` naming the bad field."""
    p = "spec"
    strategy = _str(raw, "strategy", p, max_len=63)
    if not _DNS_LABEL.match(strategy):
        raise SpecError(f"spec.strategy: {strategy!r} must be a DNS label (a-z, 0-9, '-')")
    entrypoint = _str(raw, "entrypoint", p, max_len=256)
    if not _ENTRYPOINT.match(entrypoint):
        raise SpecError(f"spec.entrypoint: {entrypoint!r} must be MODULE:CLASS")
    config = raw.get("config") or {}
    if not isinstance(config, Mapping):
        raise SpecError("spec.config: must be an object")
    version = _str(raw, "version", p, max_len=63)
    if not _VERSION.match(version):
        raise SpecError(f"spec.version: {version!r} {VERSION_HINT}")
    startup = _section(raw, "startup")
    return StrategyVersionSpec(
        strategy=strategy,
        version=version,
        image=_str(raw, "image", p, max_len=512),
        entrypoint=entrypoint,
        config_json=json.dumps(config, sort_keys=True, separators=(",", ":")),
        env=_env(raw.get("env")),
        resources=_resources(raw.get("resources")),
        handoff=_handoff(_section(raw, "handoff")),
        standby=_standby(_section(raw, "standby")),
        startup=StartupSpec(
            timeout_s=_number(
                startup, "timeoutSeconds", "spec.startup", 120.0, positive=True, maximum=3600
            ),
            max_restarts=_int(startup, "maxRestarts", "spec.startup", 2, minimum=0),
        ),
        deletion_policy=_enum(DeletionPolicy, raw, "deletionPolicy", p, DeletionPolicy.PROTECT),
        slots=_slots(raw.get("slots")),
        stake=_stake(raw.get("stake")),
    )
