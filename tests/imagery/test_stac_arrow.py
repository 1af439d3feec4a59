"""Scene records from stac-geoparquet record batches: the records scene_record makes of the
same real items, column by column and row by row."""

import copy
import datetime
import json

import pyarrow.parquet as pq
import pytest

from rf_pipelines.imagery import stac_arrow, stac_items
from tests import geoparquet, stac
from tests.conftest import TESTDATA

ITEMS = [
    "earthsearch_v1_S2A_13TDE_20231008_0_L2A.json",
    "earthsearch_v0_S2B_20EPT_20250731_0_L2A.json",
    "earthsearch_v1_LC08_L2SP_033032_20231008_02_T1.json",
    "planetary_computer_landsat-8-c2-l2_LC08_L2SP_045034_20220315_02_T2.json",
]


def _item(name, ident=None):
    item = json.loads((TESTDATA / "stac" / name).read_text())
    if ident:
        item["id"] = ident
    return item


def _batches(items, tmp_path):
    path = tmp_path / "items.parquet"
    geoparquet.write(items, path)
    parquet = pq.ParquetFile(path)
    return list(parquet.iter_batches(columns=stac_arrow.columns(parquet)))


def _expected(item, order=None):
    """scene_record's record of the item as the file holds it: its times to the millisecond
    (the precision rustac writes), its assets in the file's order (``order``: a file has one
    order of assets, the first item's, whatever order the other items listed theirs in)."""
    if order:
        item = {**item, "assets": {k: item["assets"][k] for k in order if k in item["assets"]}}
    record = stac_items.scene_record(item, "ds")
    when = record["acquisition_date"]
    record["acquisition_date"] = when.replace(microsecond=when.microsecond // 1000 * 1000)
    return record


@pytest.mark.parametrize("name", ITEMS)
def test_a_batch_of_one_collection_is_read_column_by_column_into_scene_records(name, tmp_path):
    items = [_item(name), _item(name, "copy-1"), _item(name, "copy-2")]
    [batch] = _batches(items, tmp_path)
    assert (
        stac_arrow._uniform_records(batch, "ds", range(batch.num_rows)) is not None
    )  # the column-wise path
    found = stac_arrow.batch_records(batch, "ds")
    assert [ref for ref, _, _ in found] == [i["id"] for i in items]
    assert [record for _, record, _ in found] == [_expected(i) for i in items]
    assert {day for _, _, day in found} == {_expected(items[0])["acquisition_date"].date()}


def test_a_batch_of_mixed_items_is_read_row_by_row_into_the_same_records(tmp_path):
    items = [_item(name) for name in ITEMS]
    [batch] = _batches(items, tmp_path)
    assert (
        stac_arrow._uniform_records(batch, "ds", range(batch.num_rows)) is None
    )  # assets differ: row by row
    found = stac_arrow.batch_records(batch, "ds")
    order = [field.name for field in batch.schema.field("assets").type]
    assert [record for _, record, _ in found] == [_expected(i, order) for i in items]
    # The first item's assets are in its own order: its bands are numbered as the API's.
    assert found[0][1] == _expected(items[0])


def test_bad_rows_fail_alone_on_both_paths(tmp_path):
    good = _item(ITEMS[0])
    no_datetime = copy.deepcopy(good)
    no_datetime["id"], no_datetime["properties"]["datetime"] = "no-datetime", None
    other = _item(ITEMS[1])  # another collection's item: the batch goes row by row
    for items in ([good, no_datetime], [good, no_datetime, other]):
        found = stac_arrow.batch_records(_batches(items, tmp_path)[0], "ds", first_row=10)
        ref, error, day = found[1]
        assert (ref, str(error), day) == (
            "no-datetime",
            "item no-datetime: the item has no datetime",
            None,
        )
        assert isinstance(found[0][1], dict)


def test_a_geometry_that_is_not_wkb_fails_its_row_alone(tmp_path):
    items = [_item(ITEMS[0]), _item(ITEMS[0], "broken")]
    path = tmp_path / "items.parquet"
    geoparquet.write(items, path)
    geoparquet.clear_geometry(path, "broken", value=b"not WKB")
    parquet = pq.ParquetFile(path)
    [batch] = parquet.iter_batches(columns=stac_arrow.columns(parquet))
    [(_, good, _), (ref, error, day)] = stac_arrow.batch_records(batch, "ds")
    assert good == _expected(items[0])
    assert (ref, str(error)) == ("broken", "item broken: the geometry cannot be read (not WKB)")
    assert day == datetime.date(2023, 10, 8)


def test_a_landsat_record_is_named_as_its_mtl_would_name_it(tmp_path):
    item = _item(ITEMS[2])
    [(_, record, _)] = stac_arrow.batch_records(_batches([item], tmp_path)[0], "x", True)
    assert record["datasource"] == "Landsat 8 C2"
    assert {k: record["scene_metadata"][k] for k in ("collection", "category", "sensor")} == {
        "collection": "2",
        "category": "T1",
        "sensor": "OLI_TIRS",
    }
    assert record["scene_metadata"]["processing_level"] == "L2SP"
    assert record["scene_key"] == item["id"]  # as scene_record keys it (no processing date)
    real = stac_items.scene_record(stac.real_landsat_item("2020-10-31"), "x")  # USGS's id
    [(_, record, _)] = stac_arrow.batch_records(
        _batches([stac.real_landsat_item("2020-10-31")], tmp_path)[0], "x", True
    )
    assert (record["datasource"], record["scene_key"]) == ("Landsat 8 C2", real["scene_key"])
    assert real["scene_key"] == "LC08_L2SP_001062_20201031_02"  # without processing date, tier


def test_rank_times_are_one_form_whatever_the_item_wrote():
    written = ["2023-10-09T01:25:21.658+00:00", "2023-10-09T01:25:21.658Z"]
    stored = datetime.datetime(2023, 10, 9, 1, 25, 21, 658000, tzinfo=datetime.UTC)
    assert {stac_items.rank_time(v) for v in [*written, stored]} == {"2023-10-09T01:25:21.658000Z"}
    assert stac_items.rank_time("not a time") == "not a time"
