"""``python -m bench.spans``: what tracing costs per evaluation, sampled and not (~20 s).

Times, in-process and single-threaded, the two per-evaluation places that make spans:

- strategy host: ``StrategyRuntime.evaluate`` (the real one, MomentumV1, 30 candles of history),
  which makes the ``strategy.evaluate`` span when the request's tick is sampled;
- gateway: the tracing part of executing one answer, as ``Gateway._apply_judgement`` does it
  (the ``sampled`` check, or context extraction and a ``gateway.execute`` span).

Each in three set-ups: the tick sampled with no exporter (what every evaluation paid before
sampling was respected: the default sampler was always-on and the context always sent), the
tick not sampled (the default now without an exporter, and the unsampled ticks of a ratio), and
the tick sampled with a batch exporter (an OTLP exporter's in-process cost up to the hand-off to
its worker thread; its export runs there and is not counted).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence

from opentelemetry import propagate
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import DEFAULT_OFF, DEFAULT_ON, Sampler
from opentelemetry.trace import Tracer

from baton.common import sampled
from baton.model import Candle, EvaluationRequest, Role, Slot
from baton.strategy.core.runtime import StrategyRuntime
from baton.strategy.examples.momentum_v1 import MomentumV1

SAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
SLOT = Slot("BTC", "BTCUSDT", "5m")


class _Drop(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


_HISTORY = tuple(
    Candle("BTCUSDT", "5m", t, t + 299_999, 100.0, 101, 99, 100.0 + i % 3, closed=True)
    for i, t in enumerate(range(0, 30 * 300_000, 300_000))
)
_LIVE = Candle("BTCUSDT", "5m", 9_000_000, 9_299_999, 100.0, 101, 99, 100.5)


def _requests(count: int, carrier: dict[str, str]) -> list[EvaluationRequest]:
    """Requests with increasing seqs (a seq seen again would be logged as a replay)."""
    return [
        EvaluationRequest(SLOT, seq, 1_000, 6_000, 1, Role.ACTIVE, _LIVE, _HISTORY, dict(carrier))
        for seq in range(1, count + 1)
    ]


def _gateway_execute(tracer: Tracer, carrier: dict[str, str]) -> None:
    """The tracing of ``Gateway._apply_judgement`` around one executed answer."""
    if not sampled(carrier):
        return
    with tracer.start_as_current_span(
        "gateway.execute",
        context=propagate.extract(carrier),
        attributes={
            "baton.slot_id": "BTC/5m",
            "baton.seq": 1,
            "baton.instance": "i1-pod",
            "baton.verdict": "execute",
            "baton.action": "UP",
        },
    ):
        pass


def _per_call_us(fn: Callable[[int], object], n: int, repeats: int) -> float:
    """Best of ``repeats`` runs of ``n`` calls, in µs per call (best: least disturbed).
    ``fn`` gets a call index that never repeats."""
    best = float("inf")
    for r in range(repeats):
        t0 = time.perf_counter()
        for i in range(r * n, (r + 1) * n):
            fn(i)
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e6


def _measure_setup(
    sampler: Sampler, export: bool, traceparent: str, n: int, repeats: int
) -> dict[str, float]:
    provider = TracerProvider(sampler=sampler)
    if export:
        provider.add_span_processor(BatchSpanProcessor(_Drop(), max_queue_size=1 << 20))
    tracer = provider.get_tracer("bench")
    runtime = StrategyRuntime(MomentumV1({}), tracer=tracer)
    requests = _requests(n * repeats + 1, {"traceparent": traceparent} if traceparent else {})
    answer = dict(runtime.evaluate(requests[0]).trace_context)  # what the gateway gets back
    try:
        return {
            "strategy_evaluate_us": round(
                _per_call_us(lambda i: runtime.evaluate(requests[i + 1]), n, repeats), 2
            ),
            "gateway_execute_tracing_us": round(
                _per_call_us(lambda i: _gateway_execute(tracer, answer), n, repeats), 2
            ),
        }
    finally:
        provider.shutdown()


def measure(n: int, repeats: int) -> dict[str, dict[str, float]]:
    setups: dict[str, tuple[Sampler, bool, str]] = {
        "sampled, no exporter (before)": (DEFAULT_ON, False, SAMPLED),
        "not sampled (default without exporter)": (DEFAULT_OFF, False, ""),
        "sampled, batch exporter": (DEFAULT_ON, True, SAMPLED),
    }
    # What the strategy itself costs, without any tracing: the baseline to compare with.
    bare = StrategyRuntime(MomentumV1({}))
    bare_requests = _requests(n * repeats, {})
    baseline = _per_call_us(lambda i: bare._evaluate(bare_requests[i], None), n, repeats)
    out: dict[str, dict[str, float]] = {}
    for name, (sampler, export, traceparent) in setups.items():
        out[name] = {
            **_measure_setup(sampler, export, traceparent, n, repeats),
            "strategy_untraced_us": round(baseline, 2),
        }
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.spans", description=__doc__)
    p.add_argument("-n", type=int, default=20_000, help="calls per run (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=5, help="runs, best kept (default: %(default)s)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    results = measure(args.n, args.repeats)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{'set-up':42} {'strategy evaluate':>18} {'(untraced)':>11} {'gateway execute':>16}")
    for name, r in results.items():
        print(
            f"{name:42} {r['strategy_evaluate_us']:>15.2f} µs {r['strategy_untraced_us']:>8.2f} µs"
            f" {r['gateway_execute_tracing_us']:>13.2f} µs"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
