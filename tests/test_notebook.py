"""The notebook use: `Explorer` renders inline and gives the numbers pipelines give.

Runs ``tests/notebooks/explorer.ipynb`` in a real IPython kernel with nbclient.
"""

from __future__ import annotations

import json

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from data_catalog import open_dataset
from pipelines import Query, compute_map, compute_series
from tests.conftest import REPO_ROOT

NOTEBOOK = REPO_ROOT / "tests" / "notebooks" / "explorer.ipynb"


@pytest.fixture(scope="module")
def executed():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(REPO_ROOT)}}
    ).execute()
    return nb


def test_explorer_renders_inline(executed):
    outputs = executed.cells[2].outputs
    assert outputs, "the Explorer cell displayed nothing"
    mimetypes = {m for o in outputs for m in o.get("data", {})}
    assert mimetypes & {
        "application/vnd.holoviews_exec.v0+json",
        "application/vnd.bokehjs_exec.v0+json",
    }, mimetypes
    assert not [o for o in executed.cells[2].outputs if o.get("output_type") == "error"]


def test_explorer_numbers_equal_pipelines(executed):
    text = "".join(
        o.get("text", "") for o in executed.cells[3].outputs if o.get("name") == "stdout"
    )
    summary = json.loads(text)
    assert Query.from_json(summary["query"]).dataset == "coads"
    ds = open_dataset("coads")
    expect_map = compute_map(ds, Query.from_json(summary["map_query"])).values
    got_map = np.array([np.nan if v is None else v for v in summary["map"]]).reshape(
        summary["map_shape"]
    )
    np.testing.assert_allclose(got_map, expect_map, rtol=1e-6)
    expect_series = compute_series(ds, Query.from_json(summary["series_query"])).values
    np.testing.assert_allclose(summary["series"], expect_series, rtol=1e-6)
    assert Query.from_json(summary["series_query"]).bbox == (-170.0, -5.0, -120.0, 5.0)
