"""Naming the Dask cluster; a real scheduler and worker processes on loopback."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines import Query, compute_map
from pipelines.cluster import ClusterError, ClusterSpec, connect, describe
from tests.pipelines_data import make_normalised


def test_spec_from_flags_and_environment():
    assert ClusterSpec.from_env({}).kind == "local"
    assert (
        ClusterSpec.from_env({"DASK_SCHEDULER_ADDRESS": "tcp://h:8786"}).scheduler == "tcp://h:8786"
    )
    assert ClusterSpec.from_env({"DASK_GATEWAY__ADDRESS": "http://gw"}).kind == "gateway"
    flag = ClusterSpec.from_env({"DASK_SCHEDULER_ADDRESS": "tcp://h:8786"}, scheduler="tcp://x:1")
    assert flag.scheduler == "tcp://x:1"
    with pytest.raises(ClusterError, match="choose one cluster"):
        ClusterSpec(scheduler="tcp://a:1", gateway="http://b")
    with pytest.raises(ClusterError, match="adapt bounds"):
        ClusterSpec(adapt=(3, 1))


def test_unreachable_scheduler_is_a_clear_error():
    with pytest.raises(ClusterError, match="cannot reach the Dask cluster at tcp://127.0.0.1:9"):
        connect(ClusterSpec(scheduler="tcp://127.0.0.1:9"), timeout=2)


@pytest.mark.cluster
def test_real_scheduler_and_workers_match_local_compute(dask_processes):
    ds = make_normalised().chunk({"time": 6})
    query = Query("s", "sst", start="1991", end="1992", agg="std", bbox=(150, -40, -150, 40))
    expect = compute_map(ds, query).compute(scheduler="sync")
    client = connect(ClusterSpec(scheduler=dask_processes), timeout=20)
    try:
        info = describe(client)
        assert info["workers"] == 2 and info["status"] == "connected"
        got = client.compute(compute_map(ds, query)).result()
        np.testing.assert_array_equal(got.values, expect.values)
    finally:
        client.close()
