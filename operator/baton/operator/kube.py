"""The Kubernetes calls the operator makes, and nothing else (``rbac.py`` lists the rules).

Objects travel as plain JSON dicts (what ``facts.py`` reads), through the official client's
connection, auth and TLS handling but not its generated models: the models validate and rename
fields, and a manifest should reach the API server exactly as written. The client is
synchronous; every call runs in a worker thread so the kopf event loop never blocks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from baton.operator.core.spec import GROUP, PLURAL, VERSION

log = logging.getLogger(__name__)

COMPONENT = "baton-operator"
REQUEST_TIMEOUT_S = 30.0


class KubeError(Exception):
    """A Kubernetes API call failed: ``status`` is the HTTP status (0: no response)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


def load_api_client(kubeconfig: str | None = None) -> k8s.ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig (``$KUBECONFIG``)."""
    configuration = k8s.Configuration()
    if kubeconfig is None:
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            return k8s.ApiClient(configuration)
        except k8s_config.ConfigException:
            pass
    k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)  # type: ignore[no-untyped-call]
    return k8s.ApiClient(configuration)


class Kube:
    def __init__(self, api: k8s.ApiClient) -> None:
        self._api = api

    def _request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        content_type: str = "application/json",
        missing_ok: bool = False,
    ) -> dict[str, Any] | None:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        _, url, headers, payload, _ = self._api.param_serialize(
            method=method,
            resource_path=path,
            header_params=headers,
            body=dict(body) if body is not None else None,
            auth_settings=["BearerToken"],
        )
        try:
            response = self._api.call_api(
                method, url, header_params=headers, body=payload, _request_timeout=REQUEST_TIMEOUT_S
            )
            raw: bytes = response.read()  # type: ignore[no-untyped-call]
        except k8s.exceptions.ApiException as exc:  # transport-level failure
            raise KubeError(int(exc.status or 0), str(exc.reason)) from exc
        if response.status == 404 and missing_ok:
            return None
        if not 200 <= response.status < 300:
            try:
                message = json.loads(raw).get("message", "")
            except ValueError:
                message = raw[:200].decode(errors="replace") if raw else ""
            raise KubeError(response.status, message or str(response.reason))
        data: dict[str, Any] = json.loads(raw) if raw else {}
        return data

    async def _call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        content_type: str = "application/json",
        missing_ok: bool = False,
    ) -> dict[str, Any] | None:
        return await asyncio.to_thread(
            self._request, method, path, body, content_type=content_type, missing_ok=missing_ok
        )

    @staticmethod
    def _svs(namespace: str) -> str:
        return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"

    async def get_sv(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._call("GET", f"{self._svs(namespace)}/{name}", missing_ok=True)

    async def list_svs(self, namespace: str) -> list[dict[str, Any]]:
        data = await self._call("GET", self._svs(namespace)) or {}
        items: list[dict[str, Any]] = data.get("items") or []
        return items

    async def patch_sv_status(
        self, namespace: str, name: str, status: Mapping[str, Any], resource_version: str
    ) -> None:
        """Replace ``.status`` (merge patch), guarded by the resourceVersion we decided on.

        The guard makes a decision taken on stale facts fail (409) instead of overwriting what
        another writer (an operator that was restarted meanwhile) already recorded.
        """
        body = {"metadata": {"resourceVersion": resource_version}, "status": dict(status)}
        await self._call(
            "PATCH",
            f"{self._svs(namespace)}/{name}/status",
            body,
            content_type="application/merge-patch+json",
        )

    async def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._call(
            "GET", f"/api/v1/namespaces/{namespace}/pods/{name}", missing_ok=True
        )

    async def create_pod(self, namespace: str, manifest: Mapping[str, Any]) -> bool:
        """Create it; False when it already exists (a create repeated after a restart)."""
        try:
            await self._call("POST", f"/api/v1/namespaces/{namespace}/pods", manifest)
        except KubeError as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def delete_pod(self, namespace: str, name: str) -> bool:
        """Ask for a graceful delete; False when it is already gone."""
        found = await self._call(
            "DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}", missing_ok=True
        )
        return found is not None

    async def post_event(
        self, obj: Mapping[str, Any], type_: str, reason: str, message: str, now: str
    ) -> None:
        """A core/v1 Event on ``obj`` (what `kubectl describe sv` and `kubectl get events` show)."""
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                # As the kubelet names them: object name + hex nanoseconds, so names sort in time.
                "name": f"{meta.get('name')}.{time.time_ns():x}",
                "namespace": namespace,
            },
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": meta.get("name"),
                "namespace": namespace,
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": COMPONENT,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self._call("POST", f"/api/v1/namespaces/{namespace}/events", body)
        except KubeError as exc:
            # Events are the story, not the state: losing one must not stop the rollout.
            log.warning("event not posted", extra={"reason": reason, "status": exc.status})
