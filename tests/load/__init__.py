"""Concurrent-session load test of `gridscope serve` (``make loadtest``, ``python -m tests.load.run``).

`tests.load.run.run_load` starts (or attaches to) a loopback server, drives N browser
sessions in one Chromium at human pace, and reports update latency, errors and server
memory. `tests/test_load_small.py` runs a small version in ``make test``.
"""
