"""OpenTelemetry set-up, one call per process.

Spans are exported over OTLP when the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set; otherwise tracing stays in-process (spans are
still created so context propagates, but nothing leaves the process).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import baton


def setup_tracing(
    service_name: str, *, version: str = baton.__version__, environ: Mapping[str, str] | None = None
) -> TracerProvider:
    env = os.environ if environ is None else environ
    resource = Resource.create(
        {
            "service.name": env.get("OTEL_SERVICE_NAME", service_name),
            "service.version": version,
            "service.instance.id": env.get("POD_NAME", socket.gethostname()),
            "k8s.pod.name": env.get("POD_NAME", ""),
        }
    )
    provider = TracerProvider(resource=resource)
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        # Imported lazily: the exporter pulls in its own gRPC channel set-up.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider
