"""Operator configuration: one frozen value, built and validated once at start.

Sources, later ones winning: defaults, a TOML file (``--config``), environment variables
``BATON_OPERATOR__<KEY>``, then command-line flags. A wrong setting fails at start naming it.

Example file (every key but ``gateway`` optional)::

    [operator]
    gateway = "baton-gateway.baton.svc:50052"   # the gateway's control address
    pod_gateway = "baton-gateway.baton.svc:50051"  # what strategy pods dial (default: gateway)
    # ... or every gateway replica's own address, comma-separated: hosts attach to all at once
    # and answer the leader (docs/gateway-standby.md, "Strategy hosts on both replicas").
    namespaces = ["baton"]                        # empty: every namespace
    pod_env = ["OTEL_EXPORTER_OTLP_ENDPOINT=http://jaeger:4317"]
    liveness = "http://0.0.0.0:8080/healthz"
    metrics = "0.0.0.0:9465"                      # Prometheus /metrics (port 0: any free one)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# From the module itself, not the package: `baton.common` also pulls in OpenTelemetry, which
# this pure module must not (import-linter contract).
from baton.common._config import ConfigError, Settings

_ADDRESS = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class OperatorConfig:
    gateway: str  # HOST:PORT of the gateway's ControlService
    pod_gateway: str  # HOST:PORT strategy pods attach to, or several, comma-separated
    namespaces: tuple[str, ...] = ()  # () = cluster-wide
    pod_env: tuple[tuple[str, str], ...] = ()
    liveness: str | None = None
    metrics: str | None = None  # HOST:PORT of the /metrics endpoint; None: off
    control_timeout_s: float = 10.0
    log_level: str = "INFO"


def _address(s: Settings, key: str, default: str | None) -> str:
    value = s.raw(key, default)
    if not isinstance(value, str) or not _ADDRESS.match(value):
        raise ConfigError(key, f"expected HOST:PORT, got {value!r}")
    port = int(value.rsplit(":", 1)[1])
    if not 0 < port < 65536:
        raise ConfigError(key, f"port out of range in {value!r}")
    return value


def _addresses(s: Settings, key: str, default: str) -> str:
    """One HOST:PORT or several, comma-separated (a gateway replica's each), each checked."""
    value = s.raw(key, default)
    if not isinstance(value, str):
        raise ConfigError(key, f"expected HOST:PORT[,HOST:PORT...], got {value!r}")
    items = [item.strip() for item in value.split(",")]
    if not all(items):
        raise ConfigError(key, f"an empty address in {value!r}")
    for item in items:
        _address(Settings({key: item}), key, None)
    if len(set(items)) != len(items):
        raise ConfigError(key, f"an address given twice in {value!r}")
    return ",".join(items)


def build_config(flat: Mapping[str, Any]) -> OperatorConfig:
    s = Settings(flat)
    if s.raw("operator.gateway", None) is None:
        raise ConfigError("operator.gateway", "required: the gateway's control HOST:PORT")
    gateway = _address(s, "operator.gateway", None)
    namespaces = s.raw("operator.namespaces", ())
    if isinstance(namespaces, str):
        namespaces = [n.strip() for n in namespaces.split(",") if n.strip()]
    if not isinstance(namespaces, list | tuple) or not all(
        isinstance(n, str) and _DNS_LABEL.match(n) for n in namespaces
    ):
        raise ConfigError("operator.namespaces", f"expected namespace names, got {namespaces!r}")
    pod_env_raw = s.raw("operator.pod_env", ())
    if isinstance(pod_env_raw, str):
        pod_env_raw = [e for e in pod_env_raw.split(",") if e]
    pod_env: list[tuple[str, str]] = []
    for item in pod_env_raw if isinstance(pod_env_raw, list | tuple) else [pod_env_raw]:
        name, sep, value = str(item).partition("=")
        if not sep or not _ENV_NAME.match(name):
            raise ConfigError("operator.pod_env", f"expected NAME=VALUE, got {item!r}")
        pod_env.append((name, value))
    liveness = s.raw("operator.liveness", None)
    if liveness is not None and not (isinstance(liveness, str) and liveness.startswith("http")):
        raise ConfigError("operator.liveness", f"expected an http:// URL, got {liveness!r}")
    metrics = s.raw("operator.metrics", None)
    if metrics is not None and not (
        isinstance(metrics, str)
        and _ADDRESS.match(metrics)
        and int(metrics.rsplit(":", 1)[1]) < 65536
    ):
        raise ConfigError("operator.metrics", f"expected HOST:PORT (port 0: any), got {metrics!r}")
    level = str(s.raw("operator.log_level", "INFO")).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("operator.log_level", f"expected DEBUG/INFO/WARNING/ERROR, got {level!r}")
    config = OperatorConfig(
        gateway=gateway,
        pod_gateway=_addresses(s, "operator.pod_gateway", gateway),
        namespaces=tuple(namespaces),
        pod_env=tuple(pod_env),
        liveness=liveness,
        metrics=metrics,
        control_timeout_s=s.number(
            "operator.control_timeout_s", 10.0, minimum=0, exclusive_minimum=True
        ),
        log_level=level,
    )
    s.check_unknown(("gateway.", "exchange.", "venue.", "ledger.", "strategy."))
    return config
