"""One way to name the Dask cluster, shared by ``gridscope serve`` and ``gridscope build``.

gridscope never runs a scheduler of its own making: it uses a
`distributed.LocalCluster` by default, or an existing scheduler, a Dask Gateway,
or the dask-kubernetes operator. The choice comes from a `ClusterSpec`, built from
CLI flags and the standard environment variables:

=====================  ===========================================================
``--scheduler ADDR``   an existing scheduler (also ``DASK_SCHEDULER_ADDRESS``)
``--gateway URL``      a Dask Gateway (also ``DASK_GATEWAY__ADDRESS`` / dask config)
``--kubernetes NAME``  a dask-kubernetes operator ``KubeCluster`` named NAME
(none)                 a LocalCluster of worker processes on this machine
=====================  ===========================================================

``--adapt MIN,MAX`` sets adaptive scaling bounds for clusters that can scale.
A build on a local spec (none of the three) starts no LocalCluster: its units run on
``n_workers * threads_per_worker`` threads of the building process
(`pipelines.build.build_derived`; their kernels, codecs and writes release the GIL).
`connect` makes the `distributed.Client`; `disconnect` closes it and any cluster
`connect` created for it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["ClusterError", "ClusterSpec", "connect", "describe", "disconnect"]


class ClusterError(RuntimeError):
    """The named cluster cannot be reached or created; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class ClusterSpec:
    """Which Dask cluster to use.

    Parameters
    ----------
    scheduler
        Address of an existing scheduler, e.g. ``tcp://10.0.0.5:8786``.
    gateway
        Address of a Dask Gateway server.
    kubernetes
        Name of a dask-kubernetes operator cluster to create or connect to.
    n_workers, threads_per_worker, memory_limit
        Shape of the LocalCluster (ignored for the others).
    adapt
        ``(minimum, maximum)`` workers for adaptive scaling, where supported.
    """

    scheduler: str | None = None
    gateway: str | None = None
    kubernetes: str | None = None
    n_workers: int = 2
    threads_per_worker: int = 1
    memory_limit: str = "auto"
    adapt: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        chosen = [n for n in ("scheduler", "gateway", "kubernetes") if getattr(self, n)]
        if len(chosen) > 1:
            raise ClusterError(f"choose one cluster, not {' and '.join(chosen)}")
        if self.adapt is not None:
            low, high = self.adapt
            if not 0 <= low <= high:
                raise ClusterError(f"adapt bounds must be 0 <= MIN <= MAX, got {low},{high}")
        if self.n_workers < 1 or self.threads_per_worker < 1:
            raise ClusterError("a local cluster needs at least one worker and one thread")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ClusterSpec:
        """A spec from flags (``overrides``, None meaning unset) and the environment."""
        env = os.environ if environ is None else environ
        values = {k: v for k, v in overrides.items() if v is not None}
        if not any(values.get(n) for n in ("scheduler", "gateway", "kubernetes")):
            if env.get("DASK_SCHEDULER_ADDRESS"):
                values["scheduler"] = env["DASK_SCHEDULER_ADDRESS"]
            elif env.get("DASK_GATEWAY__ADDRESS"):
                values["gateway"] = env["DASK_GATEWAY__ADDRESS"]
        return cls(**values)

    @property
    def kind(self) -> str:
        if self.scheduler:
            return "scheduler"
        if self.gateway:
            return "gateway"
        if self.kubernetes:
            return "kubernetes"
        return "local"


def connect(spec: ClusterSpec, *, timeout: float = 20.0):
    """A `distributed.Client` on the cluster ``spec`` names.

    Raises
    ------
    ClusterError
        When the scheduler address is malformed, the scheduler cannot be reached in
        ``timeout`` seconds, the Gateway refuses or lacks configuration, or the optional
        package for a Gateway / Kubernetes cluster is not installed.
    """
    import distributed

    try:
        if spec.kind == "scheduler":
            address = str(spec.scheduler)
            _check_scheduler_address(address)
            return distributed.Client(address, timeout=timeout, set_as_default=False)
        if spec.kind == "gateway":
            gateway_module = _optional("dask_gateway", "pip install dask-gateway")
            gateway = gateway_module.Gateway(spec.gateway)
            cluster = gateway.new_cluster()
            if spec.adapt:
                cluster.adapt(minimum=spec.adapt[0], maximum=spec.adapt[1])
            return cluster.get_client(set_as_default=False)
        if spec.kind == "kubernetes":
            operator = _optional("dask_kubernetes.operator", "pip install dask-kubernetes")
            cluster = operator.KubeCluster(name=spec.kubernetes)
            if spec.adapt:
                cluster.adapt(minimum=spec.adapt[0], maximum=spec.adapt[1])
            return distributed.Client(cluster, set_as_default=False)
        cluster = distributed.LocalCluster(
            n_workers=spec.n_workers,
            threads_per_worker=spec.threads_per_worker,
            processes=True,
            memory_limit=spec.memory_limit,
            dashboard_address="127.0.0.1:0",
            host="127.0.0.1",
        )
        if spec.adapt:
            cluster.adapt(minimum=spec.adapt[0], maximum=spec.adapt[1])
        return distributed.Client(cluster, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        # ValueError: dask-gateway's for a missing address or proxy address in its
        # configuration, or a request the Gateway refused (HTTP 404/422)
        where = spec.scheduler or spec.gateway or spec.kubernetes or "a local cluster"
        raise ClusterError(f"cannot reach the Dask cluster at {where}: {exc}") from None


def disconnect(client: Any) -> None:
    """Close ``client`` and the cluster `connect` created for it, if any.

    A LocalCluster, a Gateway cluster or a Kubernetes cluster made by `connect` is shut
    down with its client; a scheduler that was only connected to keeps running.
    """
    client.close()
    cluster = getattr(client, "cluster", None)
    if cluster is not None:
        cluster.close()


def _check_scheduler_address(address: str) -> None:
    """Refuse an address no scheduler can have before a `distributed.Client` is made.

    A Client that fails on a malformed address is left half-built, and a later Client
    in the same process can then hang (distributed 2026.8, with a LocalCluster running).
    """
    from distributed.comm import get_address_host_port, parse_address

    if parse_address(address)[0] == "inproc":
        return
    try:
        _host, port = get_address_host_port(address)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise ClusterError(
            f"{address[:80]!r} is not a Dask scheduler address (expected tcp://HOST:PORT)"
        )


def _optional(module: str, hint: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ClusterError(
            f"this cluster needs the {module.split('.')[0]} package ({hint})"
        ) from None


def describe(client) -> dict[str, Any]:
    """Workers, threads and dashboard link of a connected client, for display."""
    try:
        info = client.scheduler_info(n_workers=-1)
    except (OSError, TimeoutError):
        return {"status": "unavailable", "workers": 0, "threads": 0, "dashboard": None}
    workers = info.get("workers", {})
    # a scheduler started with --no-dashboard reports no services: then there is no link
    dashboard = getattr(client, "dashboard_link", None) if info.get("services") else None
    return {
        "status": "connected",
        "address": info.get("address"),
        "workers": len(workers),
        "threads": sum(int(w.get("nthreads", 0)) for w in workers.values()),
        "dashboard": dashboard,
    }
