"""Tracing set-up: the sampler from the standard settings, the resource, the sampled check."""

from __future__ import annotations

import os

import pytest
from opentelemetry.sdk.trace import sampling

from baton.common._telemetry import exporting, sampled, sampler_from_env, tracing_resource

SAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
OTLP = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}


@pytest.mark.parametrize(
    ("carrier", "expected"),
    [
        ({"traceparent": SAMPLED}, True),
        ({"traceparent": SAMPLED[:-2] + "03"}, True),  # sampled + random trace id
        ({"traceparent": SAMPLED[:-2] + "00"}, False),
        ({"traceparent": SAMPLED[:-2] + "zz"}, False),
        ({"traceparent": SAMPLED + "-future-fields"}, True),
        ({"traceparent": "00-short"}, False),
        ({}, False),
    ],
)
def test_sampled_reads_the_flag_of_a_traceparent(carrier: dict[str, str], expected: bool) -> None:
    assert sampled(carrier) is expected


def test_the_default_sampler_follows_the_parent_and_starts_traces_only_when_exporting() -> None:
    assert exporting(OTLP)
    assert not exporting({})
    assert exporting({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://x:4317"})
    assert sampler_from_env(OTLP) is sampling.DEFAULT_ON
    assert sampler_from_env({}) is sampling.DEFAULT_OFF


@pytest.mark.parametrize(
    ("env", "description"),
    [
        ({"OTEL_TRACES_SAMPLER": "always_off"}, "AlwaysOffSampler"),
        ({"OTEL_TRACES_SAMPLER": "PARENTBASED_ALWAYS_ON"}, "ParentBased{root:AlwaysOnSampler"),
        (
            {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"},
            "ParentBased{root:TraceIdRatioBased{0.25}",
        ),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}, "{1.0}"),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "x"}, "{1.0}"),
        ({"OTEL_TRACES_SAMPLER": "nonsense"}, "ParentBased{root:AlwaysOnSampler"),
    ],
)
def test_the_standard_sampler_settings_are_respected(env: dict[str, str], description: str) -> None:
    assert description in sampler_from_env({**OTLP, **env}).get_description()


def test_the_resource_names_service_version_and_pod() -> None:
    attrs = tracing_resource(
        "baton-strategy",
        version="v2",
        attributes={"baton.strategy": "momentum"},
        environ={"POD_NAME": "mom-v2-abc", "POD_NAMESPACE": "prod"},
    ).attributes
    assert attrs["service.name"] == "baton-strategy"
    assert attrs["service.version"] == "v2"
    assert attrs["service.instance.id"] == attrs["k8s.pod.name"] == "mom-v2-abc"
    assert attrs["k8s.namespace.name"] == "prod"
    assert attrs["baton.strategy"] == "momentum"


def test_outside_kubernetes_the_instance_is_host_and_pid_and_no_pod_is_claimed() -> None:
    attrs = tracing_resource("baton-gateway", environ={"OTEL_SERVICE_NAME": "gw-eu"}).attributes
    assert attrs["service.name"] == "gw-eu"
    assert "k8s.pod.name" not in attrs
    assert str(attrs["service.instance.id"]).endswith(f"-{os.getpid()}")
