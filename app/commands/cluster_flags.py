"""The Dask cluster flags of ``gridscope serve`` and ``gridscope build``, declared once.

Both commands name their cluster the same way, as a `pipelines.cluster.ClusterSpec`:
`add_cluster_flags` declares ``--scheduler``, ``--gateway``, ``--kubernetes``,
``--adapt`` and ``--workers``; `cluster_spec` reads them back, the environment
(``DASK_SCHEDULER_ADDRESS``, ``DASK_GATEWAY__ADDRESS``) filling in an unnamed cluster.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipelines.cluster import ClusterSpec

__all__ = ["add_cluster_flags", "cluster_spec"]


def add_cluster_flags(parser: argparse.ArgumentParser, *, in_process: bool = False) -> None:
    """Declare the cluster flags on ``parser``, in a group of their own.

    ``in_process``: the command also takes ``--scheduler synchronous`` (no cluster:
    the work runs in the command's own process), and the help says so.
    """
    group = parser.add_argument_group(
        "Dask cluster",
        "One of --scheduler, --gateway, --kubernetes; without them DASK_SCHEDULER_ADDRESS "
        "or DASK_GATEWAY__ADDRESS, else a LocalCluster on this machine.",
    )
    synchronous = "; 'synchronous' runs in this process, no cluster" if in_process else ""
    group.add_argument("--scheduler", metavar="ADDRESS", type=_location,
                       help=f"connect to this Dask scheduler, e.g. tcp://10.0.0.5:8786{synchronous}")  # fmt: skip
    group.add_argument("--gateway", metavar="URL", type=_location,
                       help="create a cluster on this Dask Gateway")  # fmt: skip
    group.add_argument("--kubernetes", metavar="NAME", type=_location,
                       help="create or connect to a dask-kubernetes operator cluster NAME")  # fmt: skip
    group.add_argument("--adapt", metavar="MIN,MAX", type=_adapt_bounds,
                       help="adaptive scaling bounds in workers, e.g. 1,20")  # fmt: skip
    group.add_argument("--workers", metavar="N", type=positive_int, default=2,
                       help="LocalCluster worker processes (default 2; a local build runs this many threads instead)")  # fmt: skip


def cluster_spec(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> ClusterSpec:
    """The cluster the flags in ``args`` name; ``environ`` (default: the process's)
    names it when no flag does.

    Raises
    ------
    pipelines.cluster.ClusterError
        When the flags name two clusters at once.
    """
    from pipelines.cluster import ClusterSpec

    return ClusterSpec.from_env(
        environ,
        scheduler=args.scheduler, gateway=args.gateway, kubernetes=args.kubernetes,
        n_workers=args.workers, adapt=args.adapt,
    )  # fmt: skip


def _location(text: str) -> str:
    """An address, URL or name: not empty, no spaces or control characters."""
    if not text or any(c.isspace() or not c.isprintable() for c in text):
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r}: expected an address or name without spaces"
        )
    return text


def _adapt_bounds(text: str) -> tuple[int, int]:
    try:
        low, high = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r}: expected MIN,MAX worker counts such as 1,20"
        ) from None
    if not 0 <= low <= high:
        raise argparse.ArgumentTypeError(f"{text[:40]!r}: need 0 <= MIN <= MAX")
    return low, high


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r}: expected a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text[:40]!r}: need at least 1")
    return value
