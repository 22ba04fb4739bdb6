"""``gridscope serve``: the dashboard over a Dask cluster.

By default serves the bundled catalog's local datasets on http://localhost:5006 with a
`distributed.LocalCluster` (2 worker processes x 1 thread); the cluster flags
(`app.commands.cluster_flags`: ``--scheduler``, ``--gateway``, ``--kubernetes``,
``--adapt``; or ``DASK_SCHEDULER_ADDRESS`` / ``DASK_GATEWAY__ADDRESS``) name another.
``--num-procs N`` serves from N forked processes on one port and one cluster
(`_serve_processes`; ``GRIDSCOPE_NUM_PROCS`` when the flag is absent).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import TYPE_CHECKING, Any

from app.commands.cluster_flags import add_cluster_flags
from app.settings import argument_type

if TYPE_CHECKING:
    from pipelines.cluster import ClusterSpec


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("serve", help="serve the dashboard in the browser",
                            description=__doc__.splitlines()[0])  # fmt: skip
    parser.add_argument("sources", nargs="*", metavar="SOURCE",
                        help="extra dataset paths or URLs to offer besides the catalog")  # fmt: skip
    parser.add_argument(
        "--catalog",
        metavar="FILE",
        help="catalog YAML (default: GRIDSCOPE_CATALOG or the bundled one)",
    )
    add_cluster_flags(parser)
    parser.add_argument("--port", type=int, default=5006, help="port (default 5006)")
    parser.add_argument(
        "--address", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    parser.add_argument("--allow-websocket-origin", action="append", default=[], metavar="HOST",
                        help="allowed websocket origin HOST[:PORT] (repeatable; default localhost:PORT)")  # fmt: skip
    parser.add_argument("--prefix", default="", help="URL prefix (behind a proxy)")
    parser.add_argument("--public", action="store_true",
                        help="public mode: catalog datasets only (extra SOURCE paths are refused), every "
                             "request limit on, signed session ids, an explicit websocket origin list")  # fmt: skip
    limits = parser.add_argument_group("request limits (public mode has defaults: 2GB, 4, 60 s)")
    limits.add_argument("--max-request-bytes", type=argument_type("max_request_bytes"), metavar="SIZE",
                        help="refuse a view that would read more than SIZE (e.g. 2GB, 500MiB; "
                             "env GRIDSCOPE_MAX_REQUEST_BYTES)")  # fmt: skip
    limits.add_argument("--max-concurrent", type=argument_type("max_concurrent"), metavar="N",
                        help="computations running at once over all sessions; the others queue "
                             "(env GRIDSCOPE_MAX_CONCURRENT)")  # fmt: skip
    limits.add_argument("--request-timeout", type=argument_type("request_timeout"), metavar="SECONDS",
                        help="cancel a computation after SECONDS (env GRIDSCOPE_REQUEST_TIMEOUT)")  # fmt: skip
    server = parser.add_argument_group("server security and sessions")
    server.add_argument("--sign-sessions", action=argparse.BooleanOptionalAction, default=None,
                        help="signed session ids (secret from BOKEH_SECRET_KEY; default: on with "
                             "--public, with a per-process random secret if none is set)")  # fmt: skip
    server.add_argument("--xsrf-cookies", action="store_true",
                        help="require XSRF cookies on HTTP requests that change state")  # fmt: skip
    server.add_argument("--unused-session-lifetime", type=_positive_seconds, metavar="SECONDS",
                        help="free a session SECONDS after its browser tab closed (Bokeh default 15)")  # fmt: skip
    server.add_argument("--check-unused-sessions", type=_positive_seconds, metavar="SECONDS",
                        help="look for unused sessions every SECONDS (Bokeh default 17)")  # fmt: skip
    parser.add_argument("--num-procs", type=argument_type("num_procs"), metavar="N",
                        help="N server processes on one port (forked; not on Windows), all on one "
                             "Dask cluster: the LocalCluster started once, or --scheduler. Request "
                             "limits and caches are per process: --max-concurrent 4 with 3 "
                             "processes lets 12 computations run at once (default: "
                             "GRIDSCOPE_NUM_PROCS, or 1)")  # fmt: skip
    parser.add_argument("--show", action=argparse.BooleanOptionalAction, default=False,
                        help="open a browser tab (default: no)")  # fmt: skip
    parser.set_defaults(run=run)


_positive_seconds = argument_type("request_timeout")  # Bokeh's session timers: seconds > 0


def run(args: argparse.Namespace) -> int:
    from app.commands.cluster_flags import cluster_spec
    from app.limits import Limits
    from app.server import serve, server_options
    from app.settings import Settings, SettingsError
    from app.sources import DatasetSources
    from pipelines.cluster import ClusterError, connect, disconnect

    if args.public and args.sources:
        print("gridscope serve: error: --public serves catalog datasets only; drop the SOURCE paths",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.num_procs is None:  # the flag, else GRIDSCOPE_NUM_PROCS, else 1
        try:
            args.num_procs = Settings.from_env(os.environ).num_procs
        except SettingsError as exc:
            print(f"gridscope serve: error: {exc}", file=sys.stderr)
            return 2
    if not 0 < args.port < 65536:
        print(f"gridscope serve: error: --port {args.port} is not a valid port", file=sys.stderr)
        return 2
    try:
        limits = Limits.from_options(
            public=args.public, max_request_bytes=args.max_request_bytes,
            max_concurrent=args.max_concurrent, request_timeout=args.request_timeout,
        )  # fmt: skip
        options = server_options(
            port=args.port, websocket_origins=args.allow_websocket_origin, public=args.public,
            sign_sessions=args.sign_sessions, xsrf_cookies=args.xsrf_cookies,
            unused_session_lifetime=args.unused_session_lifetime,
            check_unused_sessions=args.check_unused_sessions,
        )  # fmt: skip
    except ValueError as exc:
        print(f"gridscope serve: error: {exc}", file=sys.stderr)
        return 2
    sources = DatasetSources.from_catalog(args.catalog, args.sources)
    try:
        spec = cluster_spec(args)
        if args.num_procs > 1:
            return _serve_processes(args, sources, spec, limits, options)
        client = connect(spec)
    except ClusterError as exc:
        print(f"gridscope serve: error: {exc}", file=sys.stderr)
        return 2
    _log_to_stderr()
    where = spec.scheduler or spec.gateway or spec.kubernetes or "a LocalCluster"
    print(f"gridscope: serving {len(sources.ids)} datasets on http://{args.address}:{args.port}{args.prefix or ''}/ "
          f"(Dask: {where}, dashboard {client.dashboard_link})", flush=True)  # fmt: skip
    try:
        serve(
            sources, client=client, port=args.port, address=args.address,
            websocket_origins=args.allow_websocket_origin, prefix=args.prefix, show=args.show,
            limits=limits, spec=spec, options=options,
        )  # fmt: skip
    finally:
        disconnect(client)
    return 0


def _serve_processes(
    args: argparse.Namespace, sources: Any, spec: ClusterSpec, limits: Any, options: dict
) -> int:
    """``--num-procs N``: N forked server processes on one port and one Dask cluster.

    Forking a process that runs threads copies none of them (and may copy their locks
    held), so this process starts none: a LocalCluster runs in a process of its own
    (`_hold_local_cluster`), and every server process connects its own client to that
    scheduler's address (or to ``--scheduler``) after the fork. Bokeh forks the
    processes (``num_procs``, Tornado's ``fork_processes``) after binding the port, so
    the kernel hands each connection to one of them. All share the catalog read here
    and the session-signing key made before the fork (a page served by one process may
    open its websocket on another, which then builds the session from the signed
    token). This process waits on them and restarts one that dies; they die with it.
    """
    import signal

    from app.server import serve
    from pipelines.cluster import ClusterError, ClusterSpec, connect, disconnect

    problem = _num_procs_problem(args.num_procs, spec)
    if problem:
        print(f"gridscope serve: error: {problem}", file=sys.stderr)
        return 2
    holder = None
    if spec.kind == "local":
        holder, address, dashboard = _start_cluster_process(spec)
    else:
        address, dashboard = str(spec.scheduler), None
        _check_reachable(address)
    process_spec = ClusterSpec(scheduler=address)
    parent = os.getpid()

    def connect_process() -> tuple[Any, ClusterSpec]:  # in each forked server process
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _die_with_parent(parent)
        if holder is not None:
            holder.stdin.close()  # only this process's copy: the cluster lives on
        try:
            return connect(process_spec), process_spec
        except ClusterError as exc:
            print(f"gridscope serve: error: {exc}", file=sys.stderr, flush=True)
            os._exit(3)

    def stop(signum: int, frame: Any) -> None:  # SIGTERM: out of the wait, through `finally`
        raise SystemExit(0)

    _log_to_stderr()
    print(f"gridscope: serving {len(sources.ids)} datasets on http://{args.address}:{args.port}{args.prefix or ''}/ "
          f"with {args.num_procs} processes (Dask: {address}, dashboard {dashboard or 'n/a'})",
          flush=True)  # fmt: skip
    signal.signal(signal.SIGTERM, stop)
    try:
        serve(
            sources, port=args.port, address=args.address,
            websocket_origins=args.allow_websocket_origin, prefix=args.prefix, show=args.show,
            limits=limits, options=options, num_procs=args.num_procs,
            connect_process=connect_process,
        )  # fmt: skip
    finally:
        if os.getpid() != parent:  # a server process whose loop stopped
            from app import cluster_health

            client = cluster_health.current_client()
            if client is not None:
                disconnect(client)
        elif holder is not None:
            holder.stdin.close()  # the cluster's process shuts it down and exits
            try:
                holder.wait(timeout=30)
            except subprocess.TimeoutExpired:
                holder.kill()
    return 0


def _num_procs_problem(num_procs: int, spec: ClusterSpec, platform: str = sys.platform) -> str:
    """Why ``--num-procs`` cannot be used here, in words ("" when it can)."""
    if platform == "win32":
        return (f"--num-procs {num_procs} forks server processes, which Windows cannot do; "
                "run one gridscope serve per port behind a load balancer instead")  # fmt: skip
    if spec.kind in ("gateway", "kubernetes"):
        return (f"--num-procs {num_procs} needs one scheduler address every process connects to: "
                f"use the LocalCluster (no cluster flag) or --scheduler ADDRESS, not --{spec.kind} "
                "(start that cluster first and pass its scheduler's address)")  # fmt: skip
    return ""


def _start_cluster_process(spec: ClusterSpec) -> tuple[subprocess.Popen, str, str | None]:
    """Start `_hold_local_cluster` for ``spec``: its process, scheduler address, dashboard."""
    import dataclasses
    import json

    from pipelines.cluster import ClusterError

    code = "from app.commands.serve import _hold_local_cluster; _hold_local_cluster()"
    holder = subprocess.Popen(
        [sys.executable, "-c", code, json.dumps(dataclasses.asdict(spec))],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None
    for line in holder.stdout:
        try:
            said = json.loads(line)
        except ValueError:
            continue
        if isinstance(said, dict) and "address" in said:
            holder.stdout.close()
            return holder, said["address"], said.get("dashboard")
        if isinstance(said, dict) and "error" in said:
            break
    else:
        said = {"error": f"the local cluster's process exited (status {holder.wait()})"}
    holder.kill()
    raise ClusterError(str(said["error"]))


def _hold_local_cluster() -> None:
    """Run a LocalCluster for the server processes until stdin closes (run as a process).

    Prints one JSON line, ``{"address", "dashboard"}`` or ``{"error"}``; stdin is held
    open by the serving process, so its end (however it ends) shuts the cluster down.
    """
    import json
    import signal

    from pipelines.cluster import ClusterError, ClusterSpec, connect, disconnect

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the servers; stdin stops this
    values = json.loads(sys.argv[1])
    if values.get("adapt") is not None:
        values["adapt"] = tuple(values["adapt"])
    try:
        client = connect(ClusterSpec(**values))
    except ClusterError as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        return
    print(json.dumps({"address": client.scheduler.address, "dashboard": client.dashboard_link}),
          flush=True)  # fmt: skip
    sys.stdin.read()
    disconnect(client)


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """Refuse a ``--scheduler`` that does not answer, before forking (no thread, no Client)."""
    import socket

    from distributed.comm import get_address_host_port

    from pipelines.cluster import ClusterError

    try:
        host, port = get_address_host_port(address)
        socket.create_connection((host, port), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        raise ClusterError(f"cannot reach the Dask scheduler at {address}: {exc}") from None


def _die_with_parent(parent: int) -> None:
    """End this forked server process when the serving process ends (Linux), however it ends."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the serving process's SIGTERM handler only
        return
    if os.getppid() != parent:  # it ended before the line above
        os._exit(0)


def _log_to_stderr() -> None:
    """gridscope's own log lines (INFO and up) on stderr, beside Bokeh's and Panel's."""
    import logging

    logger = logging.getLogger("gridscope")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
