"""OpenTelemetry set-up, one call per process (see docs/observability.md).

Spans are exported over OTLP when the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set. The sampler is the standard
``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` (e.g. ``parentbased_traceidratio`` and
``0.01``: one tick in a hundred). Unset, it is ``parentbased_always_on`` when exporting and
``parentbased_always_off`` when not: a process that exports nothing starts no trace of its own
(a sampled context that arrives from another process is still continued, so propagation works
through it), and per-evaluation spans, which are made only for sampled ticks, cost nothing.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace import sampling as otel_sampling
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from baton._version import __version__

log = logging.getLogger(__name__)

_SAMPLERS: dict[str, otel_sampling.Sampler] = {
    "always_on": otel_sampling.ALWAYS_ON,
    "always_off": otel_sampling.ALWAYS_OFF,
    "parentbased_always_on": otel_sampling.DEFAULT_ON,
    "parentbased_always_off": otel_sampling.DEFAULT_OFF,
}
_RATIO_SAMPLERS = {
    "traceidratio": otel_sampling.TraceIdRatioBased,
    "parentbased_traceidratio": otel_sampling.ParentBasedTraceIdRatio,
}


def exporting(environ: Mapping[str, str] | None = None) -> bool:
    """Whether spans leave the process (an OTLP endpoint is configured)."""
    env = os.environ if environ is None else environ
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def sampler_from_env(environ: Mapping[str, str] | None = None) -> otel_sampling.Sampler:
    """The standard ``OTEL_TRACES_SAMPLER`` (+ ``_ARG``); the default depends on exporting.

    An unknown name or a bad ratio is logged and replaced by the default, as the SDK does."""
    env = os.environ if environ is None else environ
    default = "parentbased_always_on" if exporting(env) else "parentbased_always_off"
    name = env.get("OTEL_TRACES_SAMPLER", "").strip().lower() or default
    if name in _RATIO_SAMPLERS:
        raw = env.get("OTEL_TRACES_SAMPLER_ARG", "1.0")
        try:
            ratio = float(raw)
            if not 0.0 <= ratio <= 1.0:
                raise ValueError(raw)
        except ValueError:
            log.warning(
                "OTEL_TRACES_SAMPLER_ARG must be a ratio in [0, 1]; using 1.0", extra={"value": raw}
            )
            ratio = 1.0
        return _RATIO_SAMPLERS[name](ratio)
    if name not in _SAMPLERS:
        log.warning(
            "unknown OTEL_TRACES_SAMPLER; using the default",
            extra={"value": name, "default": default},
        )
        name = default
    return _SAMPLERS[name]


def sampled(carrier: Mapping[str, str]) -> bool:
    """Whether a W3C trace context (as carried in a message) belongs to a sampled trace.

    Cheap on purpose: per-evaluation code asks this before paying for extraction and a span.
    ``traceparent`` is ``VV-<32 hex trace id>-<16 hex span id>-FF``; bit 0 of FF is "sampled".
    """
    traceparent = carrier.get("traceparent")
    if traceparent is None or len(traceparent) < 55:
        return False
    try:
        return bool(int(traceparent[53:55], 16) & 1)
    except ValueError:
        return False


def tracing_resource(
    service_name: str,
    *,
    version: str = __version__,
    attributes: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Resource:
    """Who made a span: service name and version, the pod (or host and pid) it ran in.

    ``OTEL_SERVICE_NAME`` overrides the name; ``OTEL_RESOURCE_ATTRIBUTES`` adds attributes (those
    given here win over it)."""
    env = os.environ if environ is None else environ
    pod = env.get("POD_NAME", "")
    attrs: dict[str, str | int] = {
        "service.name": env.get("OTEL_SERVICE_NAME") or service_name,
        "service.version": version,
        "service.instance.id": pod or f"{socket.gethostname()}-{os.getpid()}",
        "process.pid": os.getpid(),
        "baton.version": __version__,
        **(attributes or {}),
    }
    if pod:
        attrs["k8s.pod.name"] = pod
    if env.get("POD_NAMESPACE"):
        attrs["k8s.namespace.name"] = env["POD_NAMESPACE"]
    return Resource.create(attrs)


def setup_tracing(
    service_name: str,
    *,
    version: str = __version__,
    attributes: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> TracerProvider:
    """Install the process's tracer provider. Call ``shutdown()`` on it before exiting: that
    flushes the spans still batched (the CLIs do, on SIGTERM too)."""
    env = os.environ if environ is None else environ
    resource = tracing_resource(service_name, version=version, attributes=attributes, environ=env)
    provider = TracerProvider(resource=resource, sampler=sampler_from_env(env))
    if exporting(env):
        # Imported lazily: the exporter pulls in its own gRPC channel set-up. It and the batch
        # processor read the other standard OTEL_* settings (endpoint, OTEL_BSP_SCHEDULE_DELAY).
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider
