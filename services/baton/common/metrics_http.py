"""``GET /metrics`` of one Prometheus registry on ``HOST:PORT``, the way every Baton process
that exports metrics serves it (the gateway, the operator).

Imported by its own name, not re-exported from ``baton.common``: the strategy SDK's pure core
imports ``baton.common`` and must not pull in an HTTP server (an import-linter contract).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer, start_http_server


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


# A probe: (ready, why), the why in the body (``kubectl describe pod`` shows it on a failure).
Probe = Callable[[], tuple[bool, str]]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log: a scrape or a probe every few seconds is not news."""


def serve_metrics_and_probes(
    registry: CollectorRegistry, listen: str, setting: str, probes: Mapping[str, Probe]
) -> tuple[str, WSGIServer, threading.Thread]:
    """``serve_metrics``, plus ``GET <path>`` for each probe: 200 when it holds, 503 when it
    does not, the reason as text either way (a Kubernetes readiness probe's httpGet)."""
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        probe = probes.get(environ.get("PATH_INFO", ""))
        if probe is None:
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]
        try:
            ok, why = probe()
        except Exception as exc:  # the boundary: a probe that fails says so, never 500s twice
            ok, why = False, f"probe failed: {type(exc).__name__}: {exc}"
        body = (why + "\n").encode()
        status = "200 OK" if ok else "503 Service Unavailable"
        start_response(
            status,
            [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [body]

    host, port = split_host_port(listen)

    class Server(ThreadingWSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    try:
        httpd = make_server(host, port, app, Server, handler_class=_QuietHandler)
    except OSError as exc:
        raise OSError(f"cannot serve metrics on {listen} ({setting}): {exc}") from exc
    thread = threading.Thread(target=httpd.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    return f"{listen.rpartition(':')[0]}:{httpd.server_address[1]}", httpd, thread
