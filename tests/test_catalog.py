"""Catalog loading and validation: the default catalog, malformed files, env var."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from data_catalog import Catalog, CatalogEntry, CatalogError, load_catalog
from data_catalog.catalog import DEFAULT_CATALOG_PATH

SAMPLES = Path(DEFAULT_CATALOG_PATH).parent / "samples"

GOOD_ENTRY = """\
  - id: {id}
    title: A title
    urlpath: {urlpath}
    format: netcdf
    license: CC0
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cat.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_default_catalog_has_samples_with_absolute_existing_paths():
    catalog = load_catalog()
    assert {"coads", "navy-winds", "etopo20"} <= set(catalog.ids)
    for dataset_id in ("coads", "navy-winds", "etopo20"):
        entry = catalog.get(dataset_id)
        assert Path(entry.urlpath).is_absolute()
        assert Path(entry.urlpath).is_file()
        assert entry.format == "netcdf"
        assert "NOAA PMEL" in entry.license
        assert entry.title and entry.description


def test_default_catalog_remote_entries_parse():
    catalog = load_catalog()
    remote = [e for e in catalog.entries if e.protocol in ("gs", "s3", "https")]
    assert len(remote) >= 2
    assert {e.protocol for e in remote} >= {"gs", "s3"}
    for entry in remote:
        assert entry.format == "zarr"
        assert entry.urlpath.startswith(f"{entry.protocol}://")  # left as given, not resolved
        assert entry.storage_options


def test_relative_paths_resolve_against_catalog_folder(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    path = write(tmp_path, "entries:\n" + GOOD_ENTRY.format(id="a", urlpath="data/x.nc"))
    monkeypatch.chdir("/")
    catalog = load_catalog(path)
    assert catalog.get("a").urlpath == str(tmp_path.resolve() / "data" / "x.nc")


def test_env_var_selects_catalog(tmp_path, monkeypatch):
    path = write(tmp_path, "entries:\n" + GOOD_ENTRY.format(id="only-one", urlpath="x.nc"))
    monkeypatch.setenv("GRIDSCOPE_CATALOG", str(path))
    assert load_catalog().ids == ["only-one"]


def test_derived_and_options_round_trip(tmp_path):
    text = (
        "entries:\n"
        + GOOD_ENTRY.format(id="a", urlpath="s3://bucket/x.zarr")
        + ("    storage_options: {anon: true}\n    derived: {pyramid: s3://bucket/x-pyr.zarr}\n")
    )
    entry = load_catalog(write(tmp_path, text)).get("a")
    assert entry.storage_options == {"anon": True}
    assert entry.derived == {"pyramid": "s3://bucket/x-pyr.zarr"}


@pytest.mark.parametrize(
    ("text", "must_mention"),
    [
        (
            "entries:\n"
            + GOOD_ENTRY.format(id="bad-format", urlpath="x.nc").replace(
                "format: netcdf", "format: grib"
            ),
            ["'bad-format'", "'format'", "'netcdf'", "'zarr'"],
        ),
        (
            "entries:\n"
            + GOOD_ENTRY.format(id="no-url", urlpath="x.nc").replace("    urlpath: x.nc\n", ""),
            ["'no-url'", "'urlpath'", "missing"],
        ),
        (
            "entries:\n"
            + GOOD_ENTRY.format(id="twice", urlpath="a.nc")
            + GOOD_ENTRY.format(id="twice", urlpath="b.nc"),
            ["'twice'", "'id'", "duplicate", "unique"],
        ),
        (
            "entries:\n" + GOOD_ENTRY.format(id="typo", urlpath="x.nc") + "    licence: CC0\n",
            ["'typo'", "'licence'", "unknown field", "license"],
        ),
        (
            "entries:\n" + GOOD_ENTRY.format(id="Not_A_Slug", urlpath="x.nc"),
            ["'Not_A_Slug'", "'id'", "lowercase"],
        ),
        (
            "entries:\n" + GOOD_ENTRY.format(id="ftp", urlpath="ftp://host/x.nc"),
            ["'ftp'", "'urlpath'", "s3://"],
        ),
        ("entries:\n  - just a string\n", ["entry #0", "mapping", "urlpath"]),
        ("- id: a\n- id: b\n", ["top level", "mapping", "a list"]),
        ("entries: [unclosed\n", ["not valid YAML", "line"]),
        ("entries:\n" + GOOD_ENTRY.format(id="a", urlpath="x.nc") + "version: 2\n", ["'version'"]),
    ],
    ids=[
        "bad-format",
        "missing-urlpath",
        "duplicate-id",
        "unknown-field",
        "bad-id",
        "bad-protocol",
        "entry-not-mapping",
        "top-not-mapping",
        "bad-yaml",
        "unknown-top-field",
    ],
)
def test_malformed_catalog_message_names_file_entry_and_field(tmp_path, text, must_mention):
    path = write(tmp_path, text)
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message
    for needle in must_mention:
        assert needle in message, message


def test_missing_catalog_file(tmp_path):
    with pytest.raises(CatalogError, match="catalog file not found") as info:
        load_catalog(tmp_path / "nope.yaml")
    assert str(tmp_path / "nope.yaml") in str(info.value)


def test_unknown_id_lists_known_ids():
    catalog = load_catalog()
    with pytest.raises(CatalogError) as info:
        catalog.get("no-such-dataset")
    assert isinstance(info.value, KeyError)
    message = str(info.value)
    assert "no-such-dataset" in message
    for known in catalog.ids:
        assert known in message


def test_models_can_be_built_in_code():
    entry = CatalogEntry(id="x", title="X", urlpath="/tmp/x.nc", format="zarr", license="CC0")
    assert Catalog(entries=[entry]).get("x") is entry
    with pytest.raises(ValueError, match="duplicate"):
        Catalog(entries=[entry, entry])


def test_importing_data_catalog_loads_no_ui_or_upper_layers():
    code = (
        "import sys, data_catalog; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'panel','holoviews','bokeh','hvplot','datashader','pipelines','app'}); "
        "print(','.join(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.stdout.strip() == ""


def test_derived_paths_resolve_and_reach_the_opened_dataset(tmp_path):
    import shutil

    from data_catalog import open_dataset
    from data_catalog.catalog import DEFAULT_CATALOG_PATH

    shutil.copy(
        DEFAULT_CATALOG_PATH.parent / "samples" / "coads_climatology.cdf", tmp_path / "c.cdf"
    )
    text = "entries:\n" + GOOD_ENTRY.format(id="c", urlpath="c.cdf")
    text += "    derived: {pyramid: c.cdf.gridscope/pyramid.zarr, timeseries: c.cdf.gridscope/timeseries.zarr}\n"
    catalog = load_catalog(write(tmp_path, text))
    assert catalog.get("c").derived["pyramid"] == str(
        tmp_path.resolve() / "c.cdf.gridscope" / "pyramid.zarr"
    )
    ds = open_dataset("c", catalog)
    assert ds.attrs["gridscope_derived"] == str(tmp_path.resolve() / "c.cdf.gridscope")
    assert "gridscope_derived" not in open_dataset(str(tmp_path / "c.cdf")).attrs
