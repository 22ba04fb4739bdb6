"""Two notebook `Explorer`s with two Dask clients each compute on their own cluster.

`Explorer(client=...)` used to register its client for the whole process, so the second
Explorer moved the first one's work onto its cluster (and dask's implicit computes, such
as a lazy coordinate read while planning, went to whichever client was made last). Two
real (threaded) LocalClusters here: each Explorer's maps, series and ``data()`` run as
tasks on its own scheduler only, the process's runtime keeps no client, and every answer equals brute-force numpy.
"""

from __future__ import annotations

import numpy as np
import pytest

from app import runtime
from app.sources import DatasetSources
from tests.app_data import make_ds


def _tasks(cluster) -> int:
    """Tasks the cluster's scheduler has computed so far (counted per task prefix)."""
    return sum(tp.state_counts["memory"] for tp in cluster.scheduler.task_prefixes.values())


@pytest.fixture(scope="module")
def clusters():
    """Two LocalClusters and their clients, made as a notebook makes them (each the
    default client when made)."""
    import dask

    distributed = pytest.importorskip("distributed")
    scheduler = dask.config.get("scheduler", None)
    made = []
    try:
        for _ in range(2):
            cluster = distributed.LocalCluster(
                n_workers=1, threads_per_worker=1, processes=False,
                dashboard_address=None, scheduler_port=0,
            )  # fmt: skip
            made.append((cluster, distributed.Client(cluster)))
        yield made
    finally:
        # last made, first closed: each client restores the dask scheduler setting it
        # found, so closing in the other order would leave later tests' computes asking
        # for a distributed client that no longer exists
        for cluster, client in reversed(made):
            client.close()
            cluster.close()
    assert dask.config.get("scheduler", None) == scheduler


def test_two_explorers_compute_on_their_own_clients(clusters) -> None:
    from app import Explorer

    # every job larger than 1 byte goes to the Explorer's cluster; no shared answers
    runtime.install(runtime.Runtime.from_env(
        {"GRIDSCOPE_INPROCESS_BYTES": "1", "GRIDSCOPE_CACHE_DIR": "off"}
    ))  # fmt: skip
    ds = make_ds(3)
    sources = DatasetSources.from_datasets({"synth": ds})
    (one, client_one), (two, client_two) = clusters
    first = Explorer("dataset=synth&var=tas&time=2001-02", sources=sources, client=client_one)
    before = _tasks(one), _tasks(two)
    assert before[0] > 0 and before[1] == 0  # the first Explorer's view ran on its cluster
    second = Explorer("dataset=synth&var=tas&time=2002-07", sources=sources, client=client_two,
                      region="Tropics")  # fmt: skip
    after_second = _tasks(one), _tasks(two)
    assert after_second[0] == before[0] and after_second[1] > 0
    assert first.runtime.client is client_one and second.runtime.client is client_two
    assert runtime.current().client is None  # the process's client is left as it was
    assert first.results.map_where == "cluster" and second.results.map_where == "cluster"

    # each view's numbers are the brute-force ones (numpy, the same data unchunked: no
    # compute of the test's own may land on either cluster)
    raw = make_ds(3, chunked=False)
    tas = raw["tas"].values
    times = raw["time"].dt.strftime("%Y-%m").values
    for explorer, month in ((first, "2001-02"), (second, "2002-07")):
        np.testing.assert_allclose(explorer.results.field.values,
                                   tas[list(times).index(month)], equal_nan=True)  # fmt: skip

    # the first Explorer, asked again after the second was made, still uses its own
    first.state.time = "2000-05-15"
    field, series = first.data()
    np.testing.assert_allclose(field.values, tas[list(times).index("2000-05")], equal_nan=True)
    assert series is not None and series.sizes["time"] == 36
    assert _tasks(one) > after_second[0] and _tasks(two) == after_second[1]
