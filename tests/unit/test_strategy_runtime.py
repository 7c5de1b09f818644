"""The host's synchronous core: decisions, applied_seq, export/import outcomes, the worker."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from baton.model import Action, Candle, EvaluationRequest, Role, Slot
from baton.strategy import StateEncodeError, encode_state, state_digest
from baton.strategy._executor import SerialExecutor
from baton.strategy.core.runtime import EncodedState, StrategyRuntime
from baton.strategy.examples.faulty import Faulty
from baton.strategy.examples.momentum_v1 import MomentumV1
from baton.strategy.examples.momentum_v2 import MomentumV2

BTC = Slot("BTC", "BTCUSDT", "5m")
ETH = Slot("ETH", "ETHUSDT", "5m")
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def request(seq: int, slot: Slot = BTC, epoch: int = 3, closes: int = 6) -> EvaluationRequest:
    history = tuple(
        Candle("X", "5m", t, t + 299_999, 100.0, 101, 99, 100.0 + i % 2, closed=True)
        for i, t in enumerate(range(0, closes * 300_000, 300_000))
    )
    live = Candle("X", "5m", closes * 300_000, closes * 300_000 + 299_999, 100.0, 101, 99, 100.5)
    return EvaluationRequest(
        slot, seq, 1_000, 6_000, epoch, Role.ACTIVE, live, history, {"traceparent": TRACEPARENT}
    )


def fake_clock(step_ns: int) -> Iterator[int]:
    t = 0
    while True:
        yield t
        t += step_ns


def test_decision_carries_slot_seq_epoch_action_reason_and_eval_time() -> None:
    ticks = fake_clock(1_500_000)
    rt = StrategyRuntime(MomentumV1({}), clock_ns=lambda: next(ticks))
    d = rt.evaluate(request(7, epoch=4))
    assert (d.slot_id, d.seq, d.epoch, d.action, d.error) == ("BTC/5m", 7, 4, Action.UP, "")
    assert d.reason.startswith("z=+")
    assert d.eval_us == 1500
    assert rt.applied_seq == {"BTC/5m": 7}
    assert rt.evaluations == 1


def test_evaluate_span_is_a_child_of_the_request_trace_and_the_decision_carries_it() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    rt = StrategyRuntime(Faulty({"raise_every": 2}), tracer=provider.get_tracer("test"))
    ok, failed = rt.evaluate(request(1)), rt.evaluate(request(2))
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["strategy.evaluate", "strategy.evaluate"]
    _, trace_id, parent_id, _ = TRACEPARENT.split("-")
    for span, decision in zip(spans, (ok, failed), strict=True):
        assert span.context is not None
        assert span.parent is not None
        assert format(span.context.trace_id, "032x") == trace_id
        assert format(span.parent.span_id, "016x") == parent_id
        _, d_trace, d_span, _ = decision.trace_context["traceparent"].split("-")
        assert (d_trace, d_span) == (trace_id, format(span.context.span_id, "016x"))
    assert spans[0].attributes is not None
    assert spans[0].attributes["baton.slot_id"] == "BTC/5m"
    assert spans[0].attributes["baton.action"] == "HOLD"
    assert not spans[1].status.is_ok
    provider.shutdown()


def test_decision_continues_the_request_trace_without_a_tracer_provider() -> None:
    d = StrategyRuntime(MomentumV1({})).evaluate(request(1))
    assert d.trace_context["traceparent"].split("-")[1] == TRACEPARENT.split("-")[1]


@pytest.mark.parametrize("context", [{}, {"traceparent": TRACEPARENT[:-2] + "00"}])
def test_an_evaluation_of_an_unsampled_tick_makes_no_span(context: dict[str, str]) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    rt = StrategyRuntime(Faulty({"raise_every": 2}), tracer=provider.get_tracer("test"))
    ok = rt.evaluate(replace(request(1), trace_context=context))
    failed = rt.evaluate(replace(request(2), trace_context=context))
    assert exporter.get_finished_spans() == ()
    assert ok.trace_context == failed.trace_context == {}
    assert ok.action is Action.HOLD
    assert failed.error == "FaultyError: injected failure at BTC/5m seq 2"
    assert rt.applied_seq == {"BTC/5m": 2}
    provider.shutdown()


def test_strategy_error_becomes_a_decision_error_and_still_advances_applied_seq() -> None:
    rt = StrategyRuntime(Faulty({"raise_every": 2}))
    ok, failed, after = rt.evaluate(request(1)), rt.evaluate(request(2)), rt.evaluate(request(3))
    assert (ok.action, ok.error) == (Action.HOLD, "")
    assert failed.action is None
    assert failed.error == "FaultyError: injected failure at BTC/5m seq 2"
    assert (failed.slot_id, failed.seq, failed.epoch) == ("BTC/5m", 2, 3)
    assert after.action is Action.HOLD
    assert rt.applied_seq == {"BTC/5m": 3}
    assert rt.errors == 1


def test_bad_outcome_type_is_a_decision_error() -> None:
    class Sloppy(Faulty):
        def evaluate(self, request: EvaluationRequest, state: dict[str, int]) -> Any:
            return "UP"

    d = StrategyRuntime(Sloppy({})).evaluate(request(1))
    assert d.action is None
    assert d.error.startswith("TypeError: evaluate returned 'UP'")


def test_applied_seq_is_the_max_per_slot() -> None:
    rt = StrategyRuntime(MomentumV1({}))
    for seq, slot in [(1, BTC), (1, ETH), (2, BTC), (1, BTC)]:
        rt.evaluate(request(seq, slot))
    assert rt.applied_seq == {"BTC/5m": 2, "ETH/5m": 1}


def test_export_carries_digest_and_applied_seq() -> None:
    rt = StrategyRuntime(MomentumV1({}))
    rt.evaluate(request(5))
    snap = rt.export()
    assert (snap.strategy, snap.version, snap.state_schema) == ("momentum", "v1", 1)
    assert snap.digest == state_digest(snap.data)
    assert snap.applied_seq == {"BTC/5m": 5}


def test_import_same_schema_reproduces_the_digest() -> None:
    blue = StrategyRuntime(MomentumV1({}))
    for seq in range(1, 4):
        blue.evaluate(request(seq))
    snap = blue.export()
    green = StrategyRuntime(MomentumV1({}))
    outcome = green.import_(snap)
    assert outcome.ok, outcome.error
    assert outcome.digest == outcome.migrated_digest == snap.digest
    assert (outcome.state_schema, outcome.from_schema) == (1, 1)
    assert green.applied_seq == {"BTC/5m": 3}
    assert green.export().digest == snap.digest


def test_import_with_migration_reports_the_new_digest() -> None:
    blue = StrategyRuntime(MomentumV1({}))
    blue.evaluate(request(1))
    snap = blue.export()
    green = StrategyRuntime(MomentumV2({}))
    outcome = green.import_(snap)
    assert outcome.ok, outcome.error
    assert outcome.digest == snap.digest
    assert outcome.migrated_digest == green.export().digest != snap.digest
    assert (outcome.state_schema, outcome.from_schema) == (2, 1)


def snapshot(**overrides: Any) -> EncodedState:
    strategy = MomentumV1({})
    data = encode_state(strategy, strategy.initial_state(), {"BTC/5m": 2})
    fields: dict[str, Any] = {
        "strategy": "momentum",
        "version": "v1",
        "state_schema": 1,
        "data": data,
        "digest": state_digest(data),
        "applied_seq": {"BTC/5m": 2},
    }
    fields.update(overrides)
    return EncodedState(**fields)


@pytest.mark.parametrize(
    ("snap", "error"),
    [
        (snapshot(digest="sha256:00"), "StateMismatchError: digest mismatch"),
        (snapshot(strategy="other"), "StateMismatchError: snapshot is state of strategy 'other'"),
        (snapshot(state_schema=3), "StateDecodeError: snapshot says state_schema 3"),
        (snapshot(applied_seq={"BTC/5m": 9}), "StateDecodeError: snapshot applied_seq differs"),
        (snapshot(data=b"garbage", digest=""), "StateDecodeError: state bytes are not canonical"),
        (
            snapshot(data=b"x" * 2048, digest=""),
            "StateTooLargeError: received state is 2048 bytes",
        ),
    ],
    ids=[
        "digest-mismatch",
        "other-strategy",
        "schema-field-disagrees-with-bytes",
        "applied-seq-disagrees-with-bytes",
        "garbage-bytes",
        "too-large",
    ],
)
def test_failed_import_keeps_the_previous_state(snap: EncodedState, error: str) -> None:
    rt = StrategyRuntime(MomentumV1({}), max_state_bytes=1024)
    rt.evaluate(request(1))
    before = rt.export()
    outcome = rt.import_(snap)
    assert not outcome.ok
    assert outcome.error.startswith(error), outcome.error
    assert outcome.digest == state_digest(snap.data)
    assert (outcome.state_schema, outcome.migrated_digest) == (0, "")
    assert rt.export() == before


def test_import_that_cannot_be_exported_again_fails_before_adopting() -> None:
    class Poisoned(Faulty):
        """Imports fine, but the imported state no longer exports (a strategy bug)."""

        def export_state(self, state: dict[str, int]) -> dict[str, Any]:
            return {"x": float("nan")} if "poison" in state else dict(state)

        def import_state(self, data: dict[str, Any]) -> dict[str, int]:
            return {**super().import_state(data), "poison": 1}

    blue = StrategyRuntime(Faulty({}))
    blue.evaluate(request(1))
    green = StrategyRuntime(Poisoned({}))
    green.evaluate(request(1, ETH))
    before = green.export()
    outcome = green.import_(blue.export())
    assert not outcome.ok
    assert outcome.error.startswith("StateEncodeError: state['x']: nan"), outcome.error
    assert green.export() == before


def test_import_of_a_newer_schema_runs_the_downgrade() -> None:
    blue = StrategyRuntime(MomentumV2({}))
    blue.evaluate(request(1))
    snap = blue.export()
    green = StrategyRuntime(MomentumV1({}))
    outcome = green.import_(snap)
    assert outcome.ok, outcome.error
    assert (outcome.from_schema, outcome.state_schema) == (2, 1)
    assert outcome.migrated_digest == green.export().digest
    assert green.applied_seq == {"BTC/5m": 1}


class SeesTheCollector(Faulty):
    """Records whether the cyclic GC was enabled while its state was exported/imported."""

    seen: list[bool]

    def export_state(self, state: dict[str, int]) -> dict[str, Any]:
        self.seen.append(gc.isenabled())
        if "FAIL/5m" in state:
            raise RuntimeError("export failed")
        return dict(state)


@pytest.mark.parametrize("enabled", [True, False], ids=["gc-enabled", "gc-disabled"])
def test_export_and_import_pause_the_collector_and_restore_it(enabled: bool) -> None:
    strategy = SeesTheCollector({})
    strategy.seen = []
    rt = StrategyRuntime(strategy)
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        snap = rt.export()
        assert rt.import_(snap).ok
        rt.evaluate(request(1, Slot("FAIL", "FAILUSDT", "5m")))  # and a failed export too
        with pytest.raises(StateEncodeError):
            rt.export()
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()
    assert strategy.seen == [False, False, False]  # export, re-export on import, failed export


def test_serial_executor_runs_in_order_on_one_daemon_thread() -> None:
    ex = SerialExecutor("test-worker")
    seen: list[tuple[int, str]] = []
    daemons: set[bool] = set()

    def record(i: int) -> None:
        seen.append((i, threading.current_thread().name))
        daemons.add(threading.current_thread().daemon)

    futures = [ex.submit(record, i) for i in range(50)]
    for f in futures:
        f.result(timeout=5)
    assert [i for i, _ in seen] == list(range(50))
    assert {name for _, name in seen} == {"test-worker"}
    assert daemons == {True}
    boom = ex.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        boom.result(timeout=5)
    ex.shutdown(wait=True)
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(lambda: None)
