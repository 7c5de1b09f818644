"""A real Jaeger v2 for the tracing tests: OTLP gRPC in, memory storage, the query HTTP API out.

The binary is built from its Go module by ``hack/build-k8s-bins.sh jaeger`` (``make
testbed-bins``) into the same cache as etcd and kube-apiserver. ``start_jaeger(workdir)`` writes
a config (``jaeger.yaml``: every listener on a free loopback port, nothing on Jaeger's default
ports, its own metrics off), starts it, waits until the query API answers and the OTLP port
accepts connections, and stops it (SIGTERM) on exit. Its log is ``jaeger.log`` in ``workdir``.

Query helpers read the v1 JSON API (``/api/traces``): one trace is ``{"traceID", "spans":
[{"spanID", "operationName", "references", "processID", "tags", ...}], "processes": {id:
{"serviceName", "tags"}}}``; ``Trace`` wraps one with the lookups the tests need.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.testbed import TestbedError, _address_in_use, _free_ports, _poll, _Proc, bin_dir

JAEGER_READY_TIMEOUT_S = 60.0
START_ATTEMPTS = 3  # ports are picked before Jaeger binds them: retry a lost race
MAX_TRACES = 100_000

CONFIG = """\
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: info
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:{health_port}
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: {max_traces}
  jaeger_query:
    enable_tracing: false
    storage:
      traces: mem
    http:
      endpoint: 127.0.0.1:{query_port}
    grpc:
      endpoint: 127.0.0.1:{query_grpc_port}
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{otlp_port}
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
"""


def jaeger_binary() -> Path:
    path = bin_dir() / "jaeger"
    if not path.is_file():
        raise TestbedError(
            f"no jaeger in {bin_dir()}; build it once with `make testbed-bins` "
            "(hack/build-k8s-bins.sh jaeger)"
        )
    return path


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    name: str
    service: str
    parent_id: str  # "" for a root (or a span whose parent is in another trace)
    tags: dict[str, Any]
    resource: dict[str, Any]  # the process's (OTel resource) attributes
    start_us: int
    duration_us: int


def _tags(obj: dict[str, Any]) -> dict[str, Any]:
    return {t["key"]: t.get("value") for t in obj.get("tags") or []}


@dataclass(frozen=True)
class Trace:
    trace_id: str
    spans: tuple[Span, ...]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Trace:
        processes = data.get("processes") or {}
        spans = []
        for s in data.get("spans") or []:
            parent = next(
                (
                    r["spanID"]
                    for r in s.get("references") or []
                    if r.get("refType") == "CHILD_OF" and r.get("traceID") == s["traceID"]
                ),
                "",
            )
            spans.append(
                Span(
                    trace_id=s["traceID"],
                    span_id=s["spanID"],
                    name=s["operationName"],
                    service=str(processes.get(s.get("processID"), {}).get("serviceName", "")),
                    parent_id=parent,
                    tags=_tags(s),
                    resource=_tags(processes.get(s.get("processID"), {})),
                    start_us=int(s.get("startTime", 0)),
                    duration_us=int(s.get("duration", 0)),
                )
            )
        return cls(str(data["traceID"]), tuple(sorted(spans, key=lambda s: s.start_us)))

    @property
    def services(self) -> set[str]:
        return {s.service for s in self.spans}

    def named(self, name: str) -> list[Span]:
        return [s for s in self.spans if s.name == name]

    def by_id(self, span_id: str) -> Span | None:
        return next((s for s in self.spans if s.span_id == span_id), None)

    def parent(self, span: Span) -> Span | None:
        return self.by_id(span.parent_id) if span.parent_id else None

    def render(self) -> str:
        """The span tree, one span a line (``service: name [phase->next] +start_ms duration_ms``),
        children in start order, for failure messages."""
        children: dict[str, list[Span]] = {}
        for s in self.spans:
            key = s.parent_id if self.by_id(s.parent_id) is not None else ""
            children.setdefault(key, []).append(s)
        lines = [f"trace {self.trace_id}"]
        t0 = self.spans[0].start_us if self.spans else 0

        def walk(parent: str, depth: int) -> None:
            for s in children.get(parent, []):
                phases = (
                    f" [{s.tags['baton.phase']}->{s.tags['baton.next_phase']}]"
                    if "baton.phase" in s.tags
                    else ""
                )
                lines.append(
                    f"{'  ' * depth}{s.service}: {s.name}{phases}"
                    f" +{(s.start_us - t0) / 1000:.1f}ms {s.duration_us / 1000:.1f}ms"
                )
                walk(s.span_id, depth + 1)

        walk("", 1)
        return "\n".join(lines)

    def ancestors(self, span: Span) -> list[Span]:
        """Parent, grandparent, ... up to the root (within this trace)."""
        out: list[Span] = []
        current = self.parent(span)
        while current is not None and current not in out:
            out.append(current)
            current = self.parent(current)
        return out


@dataclass(frozen=True)
class Jaeger:
    """A running Jaeger: ``otlp_endpoint`` for OTEL_EXPORTER_OTLP_ENDPOINT, ``query_url`` for
    its HTTP API (and UI), ``workdir`` with ``jaeger.yaml`` and ``jaeger.log``."""

    otlp_endpoint: str  # http://127.0.0.1:PORT (OTLP gRPC, plaintext)
    query_url: str  # http://127.0.0.1:PORT
    workdir: Path

    @property
    def log_path(self) -> Path:
        return self.workdir / "jaeger.log"

    def get(self, path: str, **params: str | int) -> Any:
        url = f"{self.query_url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url, timeout=10.0) as resp:
            return json.loads(resp.read())

    def services(self) -> list[str]:
        return list(self.get("/api/services").get("data") or [])

    def traces(
        self, service: str, *, operation: str = "", limit: int = 100, lookback_s: int = 3600
    ) -> list[Trace]:
        """The newest traces with a span of ``service`` (and ``operation``, if given)."""
        now_us = int(time.time() * 1e6)
        params: dict[str, str | int] = {
            "service": service,
            "limit": limit,
            "start": now_us - lookback_s * 1_000_000,
            "end": now_us + 60_000_000,
        }
        if operation:
            params["operation"] = operation
        return [Trace.from_json(t) for t in self.get("/api/traces", **params).get("data") or []]

    def trace(self, trace_id: str) -> Trace | None:
        try:
            data = self.get(f"/api/traces/{trace_id}").get("data") or []
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise
        return Trace.from_json(data[0]) if data else None


def assert_rollout_trace(trace: Trace, sv: str, handoff_id: str) -> Span:
    """``sv``'s rollout from v1 to v2 as one trace: the operator's rounds, its Promote, the
    gateway's handoff under it with every phase. Returns the rollout's root span."""
    assert trace.services == {"baton-operator", "baton-gateway"}, trace.services
    (root,) = trace.named("operator.rollout")
    assert root.parent_id == ""
    assert root.tags["baton.sv"] == sv
    rounds = trace.named("operator.reconcile")
    assert {r.parent_id for r in rounds} == {root.span_id}
    steps = {(r.tags["baton.phase"], r.tags["baton.next_phase"]) for r in rounds}
    assert {("Pending", "Starting"), ("Starting", "HandingOff"), ("HandingOff", "Active")} <= steps
    assert trace.named("operator.create_pod")
    (promote,) = trace.named("operator.promote")
    (handoff,) = trace.named("gateway.handoff")
    assert trace.parent(handoff) == promote
    assert handoff.tags["baton.result"] == "completed"
    assert (handoff.tags["baton.from"], handoff.tags["baton.to"]) == ("v1", "v2")
    assert handoff.tags["baton.handoff"] == handoff_id
    phases = [s.name for s in trace.spans if trace.parent(s) == handoff]
    for phase in ("exporting", "importing", "shadowing", "baking", "draining"):
        assert f"gateway.handoff.{phase}" in phases, phases
    return root


def tick_trace(trace: Trace) -> bool:
    """A tick whose evaluation ran in a strategy process and was executed by the gateway:
    gateway.tick -> strategy.evaluate -> gateway.execute, each the parent of the next."""
    for execute in trace.named("gateway.execute"):
        evaluate = trace.parent(execute)
        tick = trace.parent(evaluate) if evaluate is not None else None
        if (
            evaluate is not None
            and tick is not None
            and evaluate.name == "strategy.evaluate"
            and evaluate.service == "baton-strategy"
            and tick.name == "gateway.tick"
            and tick.service == execute.service == "baton-gateway"
        ):
            return True
    return False


def _query_ready(query_url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{query_url}/api/services", timeout=2.0) as resp:
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


@contextmanager
def start_jaeger(workdir: Path, timeout_s: float = JAEGER_READY_TIMEOUT_S) -> Iterator[Jaeger]:
    binary = jaeger_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "jaeger.yaml"
    log_path = workdir / "jaeger.log"
    for attempt in range(1, START_ATTEMPTS + 1):
        otlp_port, query_port, query_grpc_port, health_port = _free_ports(4)
        config.write_text(
            CONFIG.format(
                otlp_port=otlp_port,
                query_port=query_port,
                query_grpc_port=query_grpc_port,
                health_port=health_port,
                max_traces=MAX_TRACES,
            )
        )
        proc = _Proc("jaeger", [str(binary), "--config", str(config)], log_path)
        query_url = f"http://127.0.0.1:{query_port}"
        try:
            _poll(
                "jaeger",
                lambda: _query_ready(query_url) and _accepts(otlp_port),  # noqa: B023
                [proc],
                timeout_s,
            )
        except TestbedError:
            proc.stop()
            if attempt < START_ATTEMPTS and _address_in_use(proc):
                continue
            raise
        break
    try:
        yield Jaeger(f"http://127.0.0.1:{otlp_port}", query_url, workdir)
    finally:
        proc.stop()
