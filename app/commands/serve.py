"""``gridscope serve``: the dashboard over a Dask cluster.

By default serves the bundled catalog's local datasets on http://localhost:5006 with a
`distributed.LocalCluster` (2 worker processes x 1 thread); the cluster flags
(`app.commands.cluster_flags`: ``--scheduler``, ``--gateway``, ``--kubernetes``,
``--adapt``; or ``DASK_SCHEDULER_ADDRESS`` / ``DASK_GATEWAY__ADDRESS``) name another.
"""

from __future__ import annotations

import argparse
import sys

from app.commands.cluster_flags import add_cluster_flags, positive_int


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
    limits.add_argument("--max-request-bytes", type=_size, metavar="SIZE",
                        help="refuse a view that would read more than SIZE (e.g. 2GB, 500MiB; "
                             "env GRIDSCOPE_MAX_REQUEST_BYTES)")  # fmt: skip
    limits.add_argument("--max-concurrent", type=positive_int, metavar="N",
                        help="computations running at once over all sessions; the others queue "
                             "(env GRIDSCOPE_MAX_CONCURRENT)")  # fmt: skip
    limits.add_argument("--request-timeout", type=_seconds, metavar="SECONDS",
                        help="cancel a computation after SECONDS (env GRIDSCOPE_REQUEST_TIMEOUT)")  # fmt: skip
    server = parser.add_argument_group("server security and sessions")
    server.add_argument("--sign-sessions", action=argparse.BooleanOptionalAction, default=None,
                        help="signed session ids (secret from BOKEH_SECRET_KEY; default: on with "
                             "--public, with a per-process random secret if none is set)")  # fmt: skip
    server.add_argument("--xsrf-cookies", action="store_true",
                        help="require XSRF cookies on HTTP requests that change state")  # fmt: skip
    server.add_argument("--unused-session-lifetime", type=_seconds, metavar="SECONDS",
                        help="free a session SECONDS after its browser tab closed (Bokeh default 15)")  # fmt: skip
    server.add_argument("--check-unused-sessions", type=_seconds, metavar="SECONDS",
                        help="look for unused sessions every SECONDS (Bokeh default 17)")  # fmt: skip
    parser.add_argument("--show", action=argparse.BooleanOptionalAction, default=False,
                        help="open a browser tab (default: no)")  # fmt: skip
    parser.set_defaults(run=run)


def _size(text: str) -> int:
    from app.limits import parse_bytes

    try:
        return parse_bytes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r}: expected a number of seconds") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text[:40]!r}: must be a positive number of seconds")
    return value


def run(args: argparse.Namespace) -> int:
    from app.commands.cluster_flags import cluster_spec
    from app.limits import Limits
    from app.server import serve, server_options
    from app.sources import DatasetSources
    from pipelines.cluster import ClusterError, connect, disconnect

    if args.public and args.sources:
        print("gridscope serve: error: --public serves catalog datasets only; drop the SOURCE paths",
              file=sys.stderr)  # fmt: skip
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
