"""``baton operator``: run the kopf operator (``kopf run`` with Baton's handlers and flags).

``baton operator rbac`` prints the least-privilege RBAC objects it needs, as YAML.
Exit codes: 0 stopped by a signal; 2 bad settings.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from baton.common import ConfigError, load_settings, setup_logging, setup_tracing

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="baton operator",
        description="Run the Baton operator: roll out StrategyVersions with zero-gap handoffs.",
    )
    p.add_argument("--config", metavar="FILE", help="TOML file with an [operator] section")
    p.add_argument("--gateway", metavar="HOST:PORT", help="the gateway's control address")
    p.add_argument(
        "--pod-gateway",
        metavar="HOST:PORT",
        help="the address strategy pods attach to, or each gateway replica's, comma-separated "
        "(default: --gateway)",
    )
    p.add_argument(
        "--namespace",
        action="append",
        default=None,
        help="watch this namespace (repeat for several; default: all namespaces)",
    )
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then $KUBECONFIG)")
    p.add_argument(
        "--pod-env",
        action="append",
        default=None,
        metavar="NAME=VALUE",
        help="environment for every strategy pod (repeat), e.g. OTEL_EXPORTER_OTLP_ENDPOINT=...",
    )
    p.add_argument(
        "--liveness",
        metavar="URL",
        help="serve kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz",
    )
    p.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (port 0: any free one)",
    )
    p.add_argument("--log-level", type=str.upper, help="DEBUG, INFO, WARNING or ERROR")
    return p


def _rbac_main(argv: list[str]) -> int:
    from baton.operator.core.rbac import render

    p = argparse.ArgumentParser(
        prog="baton operator rbac", description="Print the operator's RBAC objects (YAML stream)."
    )
    p.add_argument("--service-account", default="baton-operator")
    p.add_argument("--namespace", default="baton", help="the operator's own namespace")
    p.add_argument(
        "--watch-namespace", help="a Role for this one namespace (default: a ClusterRole)"
    )
    args = p.parse_args(argv)
    docs = render(
        service_account=args.service_account,
        namespace=args.namespace,
        watch_namespace=args.watch_namespace,
    )
    # JSON is YAML; kubectl apply -f - reads either.
    print("\n---\n".join(json.dumps(d, indent=2) for d in docs))
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["rbac"]:
        return _rbac_main(argv[1:])
    args = _parser().parse_args(argv)
    from baton.operator.core.config import build_config

    try:
        flat = load_settings(args.config)
        for key, value in (
            ("gateway", args.gateway),
            ("pod_gateway", args.pod_gateway),
            ("namespaces", args.namespace),
            ("pod_env", args.pod_env),
            ("liveness", args.liveness),
            ("metrics", args.metrics),
            ("log_level", args.log_level),
        ):
            if value is not None:
                flat[f"operator.{key}"] = value
        config = build_config(flat)
    except ConfigError as exc:
        print(f"baton operator: {exc}", file=sys.stderr)
        return 2
    setup_logging("operator", config.log_level)
    if config.log_level != "DEBUG":
        # kopf logs every handled watch event at INFO ("Handler ... succeeded"); our own logs
        # tell the rollout. Its warnings and errors still come through.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    if args.kubeconfig:
        # kopf's own login reads the same file the operator's client does.
        os.environ["KUBECONFIG"] = args.kubeconfig
    provider = setup_tracing("baton-operator")

    import kopf

    from baton.operator.handlers import build_registry, make_runtime_factory
    from baton.operator.metrics import OperatorMetrics, serve

    metrics = OperatorMetrics()
    try:
        metrics_addr = serve(metrics.registry, config.metrics)[0] if config.metrics else None
    except OSError as exc:
        print(f"baton operator: {exc}", file=sys.stderr)
        return 2
    registry = build_registry(
        config, make_runtime_factory(config, args.kubeconfig, metrics), metrics_addr=metrics_addr
    )
    log.info(
        "operator starting",
        extra={"gateway": config.gateway, "namespaces": list(config.namespaces) or "*"},
    )
    try:
        kopf.run(
            registry=registry,
            standalone=True,  # one operator per cluster; no peering objects needed
            namespaces=list(config.namespaces),
            clusterwide=not config.namespaces,
            liveness_endpoint=config.liveness,
        )
    finally:
        provider.shutdown()
    return 0
