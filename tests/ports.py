"""A free loopback port for a server a test starts, outside the kernel's ephemeral range.

The port is chosen here and bound later by another process. Asking the kernel for port 0
would hand out a port from the ephemeral range, and in the gap before the server binds it
any process asking for port 0 (a Dask worker or nanny the server itself starts, a client
connection) may be given the same one: CI once saw the test talk HTTP to a Dask comm
(``BadStatusLine: ... compression ... pickle-protocol``). Ports below the ephemeral range are
only ever bound by name, so a port free now stays free for the server.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

__all__ = ["free_port"]

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ephemeral_low() -> int:
    try:
        return int(_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux default


def free_port() -> int:
    """A loopback TCP port that is free now and that the kernel never hands out for port 0."""
    high = min(_ephemeral_low(), 65536)
    low = max(1024, high - 12000)
    for port in random.sample(range(low, high), 200):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {low}..{high - 1}")
