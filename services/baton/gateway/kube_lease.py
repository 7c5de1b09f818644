"""The gateway's leadership lease as a Kubernetes Lease (``coordination.k8s.io/v1``), the
``LeaseStore`` of the chart's two gateway replicas (docs/gateway-standby.md).

The record maps onto the Lease's spec: ``holderIdentity`` (absent: free), ``leaseTransitions``
(the term), ``leaseDurationSeconds`` (the lease duration, rounded up to whole seconds: a follower
then waits at least as long as the leader assumed), ``acquireTime`` and ``renewTime`` (wall
times, for people; the machine never reads them). The version is the object's
``resourceVersion``: a replace that names an older one is refused by the API server (409), which
is the compare-and-swap. The RBAC this needs is ``core/lease_rbac.py``'s.

The ``kubernetes`` client is synchronous: each call runs in a worker thread, with a request
timeout so that an abandoned call does not hold a thread for long.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from typing import Any

import kubernetes.client as k8s
from kubernetes.client import ApiException

from baton.gateway.core.leadership import LeaseRecord
from baton.gateway.lease import LeaseConflict, LeaseUnavailable


def _to_wall_ms(t: dt.datetime | None) -> int:
    return int(t.timestamp() * 1000) if t is not None else 0


def _from_wall_ms(ms: int) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC) if ms else None


def _now() -> dt.datetime:
    return dt.datetime.now(tz=dt.UTC)


def to_record(lease: k8s.V1Lease) -> LeaseRecord:
    spec = lease.spec or k8s.V1LeaseSpec()
    return LeaseRecord(
        holder=spec.holder_identity or "",
        term=spec.lease_transitions or 0,
        lease_duration_ms=(spec.lease_duration_seconds or 0) * 1000,
        version=(lease.metadata.resource_version if lease.metadata else None) or "",
        acquired_ms=_to_wall_ms(spec.acquire_time),
        renewed_ms=_to_wall_ms(spec.renew_time),
    )


class KubeLease:
    """One Lease, ``namespace/name``, through ``api`` (a ``kubernetes.client.ApiClient``)."""

    def __init__(
        self, api: k8s.ApiClient, namespace: str, name: str, *, request_timeout_s: float = 5.0
    ) -> None:
        self._api = k8s.CoordinationV1Api(api)
        self.namespace = namespace
        self.name = name
        self._timeout = request_timeout_s

    @property
    def where(self) -> str:
        return f"lease {self.namespace}/{self.name}"

    async def read(self) -> LeaseRecord | None:
        return await asyncio.to_thread(self._read)

    async def try_acquire(self, record: LeaseRecord, expected_version: str | None) -> LeaseRecord:
        now = _now()
        spec = self._spec(record, acquired=now, renewed=now)
        if expected_version is None:
            return await asyncio.to_thread(self._create, spec)
        return await asyncio.to_thread(self._replace, spec, expected_version)

    async def renew(self, record: LeaseRecord, expected_version: str) -> LeaseRecord:
        spec = self._spec(record, acquired=_from_wall_ms(record.acquired_ms), renewed=_now())
        return await asyncio.to_thread(self._replace, spec, expected_version)

    async def release(self, record: LeaseRecord, expected_version: str) -> LeaseRecord:
        spec = self._spec(record, acquired=_from_wall_ms(record.acquired_ms), renewed=_now())
        return await asyncio.to_thread(self._replace, spec, expected_version)

    # -- blocking parts, in a worker thread ------------------------------------------------

    def _spec(
        self, record: LeaseRecord, *, acquired: dt.datetime | None, renewed: dt.datetime | None
    ) -> k8s.V1LeaseSpec:
        return k8s.V1LeaseSpec(
            holder_identity=record.holder or None,
            lease_duration_seconds=max(1, math.ceil(record.lease_duration_ms / 1000)),
            lease_transitions=record.term,
            acquire_time=acquired,
            renew_time=renewed,
        )

    def _read(self) -> LeaseRecord | None:
        try:
            lease = self._api.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=self._timeout
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise self._unavailable("read", exc) from exc
        except Exception as exc:  # urllib3's connection errors, timeouts
            raise self._unavailable("read", exc) from exc
        return to_record(lease)

    def _create(self, spec: k8s.V1LeaseSpec) -> LeaseRecord:
        body = k8s.V1Lease(
            metadata=k8s.V1ObjectMeta(name=self.name, namespace=self.namespace), spec=spec
        )
        try:
            created = self._api.create_namespaced_lease(
                self.namespace, body, _request_timeout=self._timeout
            )
        except ApiException as exc:
            if exc.status == 409:  # AlreadyExists: someone created it first
                raise LeaseConflict(self._read_or_none()) from exc
            raise self._unavailable("create", exc) from exc
        except Exception as exc:
            raise self._unavailable("create", exc) from exc
        return to_record(created)

    def _replace(self, spec: k8s.V1LeaseSpec, expected_version: str) -> LeaseRecord:
        body = k8s.V1Lease(
            metadata=k8s.V1ObjectMeta(
                name=self.name, namespace=self.namespace, resource_version=expected_version
            ),
            spec=spec,
        )
        try:
            replaced = self._api.replace_namespaced_lease(
                self.name, self.namespace, body, _request_timeout=self._timeout
            )
        except ApiException as exc:
            if exc.status == 409:  # Conflict: the object has changed since expected_version
                raise LeaseConflict(self._read_or_none()) from exc
            if exc.status == 404:  # deleted under us
                raise LeaseConflict(None, f"{self.where} is gone") from exc
            raise self._unavailable("update", exc) from exc
        except Exception as exc:
            raise self._unavailable("update", exc) from exc
        return to_record(replaced)

    def _read_or_none(self) -> LeaseRecord | None:
        try:
            return self._read()
        except LeaseUnavailable:
            return None

    def _unavailable(self, verb: str, exc: Exception) -> LeaseUnavailable:
        detail: Any = exc
        if isinstance(exc, ApiException):
            detail = f"HTTP {exc.status} {exc.reason}"
        return LeaseUnavailable(f"{verb} {self.where}: {detail}")
