"""``GET /metrics`` of one Prometheus registry on ``HOST:PORT``, the way every Baton process
that exports metrics serves it (the gateway, the operator).

Imported by its own name, not re-exported from ``baton.common``: the strategy SDK's pure core
imports ``baton.common`` and must not pull in an HTTP server (an import-linter contract).
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import start_http_server


def split_host_port(listen: str) -> tuple[str, int]:
    """``"127.0.0.1:9464"`` -> ("127.0.0.1", 9464); ``"[::1]:0"`` -> ("::1", 0)."""
    host, _, port = listen.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def serve_metrics(
    registry: CollectorRegistry, listen: str, setting: str
) -> tuple[str, WSGIServer, threading.Thread]:
    """Bind ``listen`` (port 0: any free one) and serve ``registry`` from prometheus_client's
    daemon thread, off the event loop. Returns the bound ``HOST:PORT``, the server and its
    thread; a bind failure is an ``OSError`` naming ``setting``."""
    host, port = split_host_port(listen)
    try:
        httpd, thread = start_http_server(port, host, registry=registry)
    except OSError as exc:
        raise OSError(f"cannot serve metrics on {listen} ({setting}): {exc}") from exc
    return f"{listen.rpartition(':')[0]}:{httpd.server_address[1]}", httpd, thread
