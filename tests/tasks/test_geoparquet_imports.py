"""Imports from stac-geoparquet files (``import SOURCE --from-geoparquet``): local files and
``s3://`` objects on the local store, written from real items by rustac's own writer."""

import datetime
import gc
import json
import os
import shutil
import uuid

import pytest
from click.testing import CliRunner

from rf_pipelines import clients, config
from rf_pipelines.catalog import db, imports
from rf_pipelines.cli import cli
from rf_pipelines.imagery import stac_items
from rf_pipelines.tasks import geoparquet as geoparquet_task
from tests import geoparquet, stac


@pytest.fixture()
def env(s3_bucket, database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("RF_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("RF_DATABASE_URL", database_url)
    root = f"s3://{s3_bucket}/landsat-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("RF_ASSET_MIRRORS", f"s3://usgs-landsat={root}")
    config.settings.cache_clear()
    return {"db": database_url, "tmp": tmp_path, "bucket": s3_bucket, "root": root}


def _import(source, *args):
    result = CliRunner().invoke(cli, ["import", source, *args, "--local-scheduler"])
    lines = [json.loads(line) for line in result.output.splitlines() if line.startswith('{"')]
    return result.exit_code, lines, result.output


def _from_file(source, *urls):
    return _import(source, *[a for url in urls for a in ("--from-geoparquet", str(url))])


def _scenes(database_url):
    """Every imported scene's row, with xmin (a row rewritten gets a new one)."""
    with db.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT xmin::text, id, name, datasource_id, acquisition_date, cloud_cover, "
            "sun_azimuth, sun_elevation, tile_footprint_4326, tile_footprint_3857, "
            "data_footprint_4326, data_footprint_3857, scene_metadata, metadata_files, "
            "thumbnail_status, boundary_status, visibility, modified_at, written_by "
            "FROM scenes WHERE owner = 'rf_pipelines' ORDER BY name"
        )
        return cur.fetchall()


def _failures(database_url, source=None):
    with db.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT day, ref, reason FROM import_failures WHERE source = coalesce(%s, source) "
            "ORDER BY ref",
            (source,),
        )
        return cur.fetchall()


def _put(bucket, path):
    key = f"geoparquet-{uuid.uuid4().hex[:8]}/{path.name}"
    s3 = clients.aws_client("s3", config.settings().s3_endpoint_url)
    s3.upload_file(str(path), bucket, key)
    return f"s3://{bucket}/{key}"


@pytest.mark.parametrize(("where", "batch_rows"), [("local", 20_000), ("local", 3), ("s3", 20_000)])
def test_every_good_row_is_imported_and_a_bad_row_fails_alone_with_its_reason(
    env, where, batch_rows, monkeypatch
):
    monkeypatch.setattr(geoparquet_task, "BATCH_ROWS", batch_rows)  # 3: three batches
    url = geoparquet.SENTINEL2 if where == "local" else _put(env["bucket"], geoparquet.SENTINEL2)
    code, [report], out = _from_file("sentinel2-stac", url)
    assert code == 3, out
    assert report["status"] == "PARTIAL" and report["file"] == str(url)
    assert (report["rows"], report["written"], report["failed"]) == (7, 5, 2)
    no_datetime, no_geometry = geoparquet.NO_DATETIME, geoparquet.NO_GEOMETRY
    assert report["failures"] == {
        no_datetime: f"item {no_datetime}: the item has no datetime",
        no_geometry: f"item {no_geometry}: the item has no geometry",
    }
    assert "ImportGeoparquet(" in out and "2 of 7 rows failed" in out
    # Each failure is filed under the item's day; a row without a time, under the day it was
    # read; all apart from the day imports' failures, whose days they leave as they are.
    assert _failures(env["db"], "geoparquet:sentinel2-stac") == [
        (datetime.datetime.now(datetime.UTC).date(), no_datetime, report["failures"][no_datetime]),
        (datetime.date(2023, 10, 8), no_geometry, report["failures"][no_geometry]),
    ]
    scenes = _scenes(env["db"])
    assert [s[2] for s in scenes] == [i["id"] for i in geoparquet.s2_items()]

    # The rerun reads the file again: the bad rows fail again, the rest is left as it is.
    code, [again], out = _from_file("sentinel2-stac", url)
    assert code == 3, out
    assert (again["written"], again["unchanged"], again["failures"]) == (0, 5, report["failures"])
    assert _scenes(env["db"]) == scenes


def test_a_bad_row_of_a_file_leaves_its_days_import_complete(env):
    """A day the day imports finished stays COMPLETE when a file's row of that day fails:
    the file's failures are its own, not the day's (the nightly check would fail the day
    for ever, and a backfill would discover it again)."""
    day = datetime.date(2023, 10, 8)  # the day of the fixture's row without geometry
    with db.transaction(env["db"]) as conn:
        imports.start_day(conn, "sentinel2-stac", day, 0, "s3://nowhere/manifest.json")
        assert imports.finish_day(conn, "sentinel2-stac", day) == "COMPLETE"
    code, [report], out = _from_file("sentinel2-stac", geoparquet.SENTINEL2)
    assert code == 3 and geoparquet.NO_GEOMETRY in report["failures"], out
    with db.connect(env["db"]) as conn:
        assert imports.day_report(conn, "sentinel2-stac", day)["status"] == "COMPLETE"
        assert imports.complete_days(conn, "sentinel2-stac", day, day) == {day}
    assert _failures(env["db"], "sentinel2-stac") == []


def test_reading_the_same_file_again_changes_no_row(env):
    path = env["tmp"] / "s2.parquet"
    geoparquet.write(geoparquet.s2_items(), path)
    code, [first], out = _from_file("sentinel2-stac", path)
    assert code == 0, out
    assert (first["status"], first["rows"], first["written"], first["unchanged"]) == (
        "COMPLETE",
        5,
        5,
        0,
    )
    scenes = _scenes(env["db"])

    code, [again], out = _from_file("sentinel2-stac", path)  # the same version: not read
    assert code == 0 and again["read_again"] is False, out

    os.utime(path, ns=(1, 1))  # a new version of the file, with the same items: read again
    code, [again], out = _from_file("sentinel2-stac", path)
    assert code == 0, out
    assert (again["rows"], again["written"], again["unchanged"]) == (5, 0, 5)
    assert "read_again" not in again
    assert _scenes(env["db"]) == scenes  # same rows, same xmin, same modified_at


def test_records_are_the_stac_paths_records_for_the_same_items(env, monkeypatch):
    items = geoparquet.s2_items()
    with stac.stac_api(items, env["tmp"] / "stac") as url:
        monkeypatch.setenv("RF_SENTINEL2_STAC_URL", url)
        config.settings.cache_clear()
        code, _, out = _import("sentinel2-stac", "--date", "2023-10-08")
    assert code == 0, out
    by_stac = _scenes(env["db"])
    path = env["tmp"] / "s2.parquet"
    geoparquet.write(items, path)
    # What the day's import wrote is left as it is.
    code, [report], out = _from_file("sentinel2-stac", path)
    assert code == 0 and (report["written"], report["unchanged"]) == (0, 5), out
    assert _scenes(env["db"]) == by_stac
    with db.transaction(env["db"]) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM scenes")

    os.utime(path, ns=(1, 1))
    code, _, out = _from_file("sentinel2-stac", path)
    assert code == 0, out
    by_file = _scenes(env["db"])

    def comparable(row):
        # Not xmin, modified_at and written_by; the STAC API server gives each item a self
        # link of its own (stac_item and the first metadata file), the file keeps the item's.
        metadata = {k: v for k, v in row[12].items() if k != "stac_item"}
        return (*row[1:12], metadata, row[13][1:], *row[14:17])

    assert len(by_file) == len(items)
    assert [comparable(r) for r in by_file] == [comparable(r) for r in by_stac]
    assert [r[13][0] for r in by_file] == [i["links"][0]["href"] for i in items]  # self

    # A day's import does not count a file's scenes as its own: the next night's look-back
    # check of the day imports them again from the API.
    with stac.stac_api(items, env["tmp"] / "stac-again") as url:
        monkeypatch.setenv("RF_SENTINEL2_STAC_URL", url)
        config.settings.cache_clear()
        code, days, out = _import("sentinel2-stac", "--date", "2023-10-09", "--lookback", "1")
    assert code == 0 and days[0]["day"] == "2023-10-08" and days[0]["discovered"] == 5, out
    assert {r[18] for r in _scenes(env["db"])} == {by_stac[0][18]}  # ImportBatch's again


def test_a_landsat_file_names_its_scenes_as_the_stac_path_without_reading_mtls(env, monkeypatch):
    item = stac.real_landsat_item("2020-10-31")
    stac.put_mtl(env["root"], item)
    with stac.stac_api([item], env["tmp"] / "stac") as url:
        monkeypatch.setenv("RF_LANDSAT_STAC_URL", url)
        config.settings.cache_clear()
        code, _, out = _import("landsat", "--date", "2020-10-31")
    assert code == 0, out
    [by_stac] = _scenes(env["db"])
    with db.transaction(env["db"]) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM scenes")

    path = env["tmp"] / "landsat.parquet"
    geoparquet.write([item], path)
    code, [report], out = _from_file("landsat", path)
    assert code == 0 and report["written"] == 1, out
    [by_file] = _scenes(env["db"])
    # The same scene (id, name, datasource) with the same footprints, clouds and sun.
    assert by_file[1:4] == by_stac[1:4]
    assert by_file[5:12] == by_stac[5:12]
    # The file stores times to the millisecond (rustac's writer); the MTL to the microsecond.
    assert abs(by_file[4] - by_stac[4]) < datetime.timedelta(milliseconds=1)
    same = ("product_id", "product_rank", "path", "row", "collection", "category", "sensor")
    assert {k: by_file[12][k] for k in same} == {k: by_stac[12][k] for k in same}
    assert by_file[12]["processing_level"] == by_stac[12]["processing_level"] == "L2SP"
    # What the MTL alone gives stays the STAC path's: its own URL among the metadata files.
    mtl_url = by_stac[13][-1]
    assert mtl_url.endswith("_MTL.json") and mtl_url not in by_file[13]
    # The bands are the item's (the STAC path takes the MTL's).
    from_item = stac_items.scene_record(item, "Landsat C2")
    assert by_file[12]["bands"] == from_item["bands"] != by_stac[12]["bands"]


def test_a_newer_product_in_a_file_replaces_its_scene_and_an_older_one_does_not(env):
    item = stac.real_landsat_item("2020-10-31")
    text = (stac.LANDSAT / f"{stac.REAL_MTLS['2020-10-31']}.json").read_text()
    newer, _ = stac.republished(item, text, "20201215", "T1")
    files = {name: env["tmp"] / f"{name}.parquet" for name in ("older", "newer", "older-again")}
    geoparquet.write([item], files["older"])
    geoparquet.write([newer], files["newer"])
    geoparquet.write([item], files["older-again"])
    assert _from_file("landsat", files["older"])[0] == 0
    code, [report], out = _from_file("landsat", files["newer"])
    assert code == 0 and (report["written"], report["unchanged"]) == (1, 0), out
    code, [report], out = _from_file("landsat", files["older-again"])
    assert code == 0 and (report["written"], report["unchanged"]) == (0, 1), out
    [scene] = _scenes(env["db"])
    assert scene[12]["product_id"] == newer["id"] and scene[12]["category"] == "T1"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("{tmp}/missing.parquet", "--from-geoparquet {url}: no such file or object"),
        ("s3://{bucket}/missing/items.parquet", "--from-geoparquet {url}: no such file or object"),
        ("{tmp}", "--from-geoparquet {url}: no such file or object"),
        ("{tmp}/items.json", "--from-geoparquet {url}: not a Parquet file"),
    ],
)
def test_a_bad_path_or_url_is_one_line_and_exit_2(env, url, message):
    url = url.format(tmp=env["tmp"], bucket=env["bucket"])
    shutil.copy(geoparquet.S2_ITEM, env["tmp"] / "items.json")
    code, lines, out = _from_file("sentinel2-stac", url)
    assert code == 2, out
    assert lines == []
    assert out.strip().splitlines() == [f"Error: {message.format(url=url)}"]


def test_a_source_that_is_not_made_of_stac_items_is_refused(env):
    code, _, out = _from_file("sentinel2", geoparquet.SENTINEL2)
    assert code == 2
    assert out.strip().startswith("Error: source 'sentinel2' reads a bucket layout")


def test_the_cycle_collector_is_paused_while_a_file_is_read_and_restored_after(env, monkeypatch):
    path = env["tmp"] / "s2.parquet"
    geoparquet.write(geoparquet.s2_items(), path)
    seen = []
    records = geoparquet_task._records

    def watched(*args):
        seen.append(gc.isenabled())
        return records(*args)

    monkeypatch.setattr(geoparquet_task, "_records", watched)
    code, [report], out = _from_file("sentinel2-stac", path)
    assert code == 0 and report["written"] == 5, out
    assert seen == [False] and gc.isenabled()
