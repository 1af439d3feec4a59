"""Scheduled Sentinel-2 imports from a local mirror of the bucket layout, through luigid."""

import datetime
import json

import pytest
from click.testing import CliRunner

from rf_pipelines import config, sources
from rf_pipelines.catalog import db, rows
from rf_pipelines.cli import cli
from rf_pipelines.errors import ConfigError, TransientError
from rf_pipelines.targets import files
from tests import mirror

DAY = datetime.date(2017, 7, 29)


def _import(*args):
    result = CliRunner().invoke(cli, ["import", "sentinel2", *args])
    days = [json.loads(line) for line in result.output.splitlines() if line.startswith('{"')]
    return result.exit_code, days, result.output


def _scenes(database_url):
    with db.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT name, modified_at, scene_metadata->>'product_name' FROM scenes "
            "WHERE owner = 'rf_pipelines' ORDER BY name"
        )
        return cur.fetchall()


def test_a_day_is_imported_once(s2_bucket, database_url):
    mirror.put_day(s2_bucket, DAY, ["DP", "DQ", "EP"])
    code, days, out = _import("--date", str(DAY))
    assert code == 0, out
    assert days == [
        {
            "source": "sentinel2",
            "day": "2017-07-29",
            "status": "COMPLETE",
            "discovered": 3,
            "manifest": days[0]["manifest"],
            "failures": {},
        }
    ]
    scenes = _scenes(database_url)
    assert [s[0] for s in scenes] == sorted(mirror.scene_name(DAY, sq) for sq in ("DP", "DQ", "EP"))

    manifest = days[0]["manifest"]
    code, days, out = _import("--date", str(DAY))
    assert code == 0 and days[0]["status"] == "COMPLETE"
    assert days[0]["manifest"] == manifest
    assert _scenes(database_url) == scenes  # nothing rewritten


def test_bad_metadata_fails_that_scene_alone_and_the_rerun_retries_it(s2_bucket, database_url):
    mirror.put_day(s2_bucket, DAY, ["DP", "DQ"])
    broken = mirror.tile_info(DAY, "DQ")
    del broken["tileGeometry"]
    mirror.put_json(s2_bucket, f"{mirror.tile_path(DAY, 'DQ')}/tileInfo.json", broken)

    code, days, out = _import("--date", str(DAY))
    assert code == 3, out
    (report,) = days
    assert report["status"] == "PARTIAL"
    ((ref, reason),) = report["failures"].items()
    # The tile's metadata, and the product that listed it.
    assert ref.endswith("/19/U/DQ/2017/7/29/0/tileInfo.json#" + mirror.product_name(DAY, "DQ"))
    assert "missing field tileGeometry" in reason
    good = _scenes(database_url)
    assert [s[0] for s in good] == [mirror.scene_name(DAY, "DP")]

    mirror.put_json(
        s2_bucket, f"{mirror.tile_path(DAY, 'DQ')}/tileInfo.json", mirror.tile_info(DAY, "DQ")
    )
    code, days, out = _import("--date", str(DAY))
    assert code == 0, out
    assert days[0]["status"] == "COMPLETE" and days[0]["failures"] == {}
    after = _scenes(database_url)
    assert [s[0] for s in after] == sorted(mirror.scene_name(DAY, sq) for sq in ("DP", "DQ"))
    assert after[0] == good[0]  # the good scene was not read or written again


def test_lookback_finds_late_scenes(s2_bucket, database_url):
    mirror.put_day(s2_bucket, DAY, ["DP"])
    assert _import("--date", str(DAY))[0] == 0
    mirror.put_day(s2_bucket, DAY, ["EQ"])  # published after the night's run
    nextday = DAY + datetime.timedelta(1)
    mirror.put_day(s2_bucket, nextday, ["DP"])
    code, days, out = _import("--date", str(nextday), "--lookback", "1")
    assert code == 0, out
    assert [d["day"] for d in days] == [str(DAY), str(nextday)]
    assert [s[0] for s in _scenes(database_url)] == sorted(
        [
            mirror.scene_name(DAY, "DP"),
            mirror.scene_name(DAY, "EQ"),
            mirror.scene_name(nextday, "DP"),
        ]
    )


def test_reprocessed_product_updates_its_scene(s2_bucket, database_url):
    # AWS kept a reprocessed product at the tile's own path: the tile path named the
    # product, so the look-back skipped it as imported and the scene kept the old baseline.
    mirror.put_day(s2_bucket, DAY, ["DP"])
    assert _import("--date", str(DAY))[0] == 0
    [before] = _scenes(database_url)
    mirror.put_day(s2_bucket, DAY, ["DP"], baseline="N0400", made="20230301T101010")
    nextday = DAY + datetime.timedelta(1)
    code, days, out = _import("--date", str(nextday), "--lookback", "1")
    assert code == 0, out
    [after] = _scenes(database_url)  # the same scene, updated
    assert after[0] == before[0] == mirror.scene_name(DAY, "DP")
    assert after[2] == mirror.product_name(DAY, "DP", "N0400", "20230301T101010")
    assert after[1] > before[1]


@pytest.mark.parametrize("first", ["older", "newer"])
def test_the_newest_product_wins_whatever_order_they_arrive_in(s2_bucket, database_url, first):
    # Two products of one acquisition at two tile paths (0 and 1), discovered on two nights
    # in either order: the scene ends with the newer baseline's product either way.
    products = {"older": ("N0205", "20170729T153557"), "newer": ("N0400", "20230301T101010")}
    second = "newer" if first == "older" else "older"
    nextday = DAY + datetime.timedelta(1)
    for sequence, (which, args) in enumerate([(first, ("--date", str(DAY))), (second, None)]):
        baseline, made = products[which]
        mirror.put_day(s2_bucket, DAY, ["DP"], baseline=baseline, made=made, sequence=sequence)
        code, days, out = _import(*(args or ("--date", str(nextday), "--lookback", "1")))
        assert code == 0, out
    [scene] = _scenes(database_url)
    assert scene[0] == mirror.scene_name(DAY, "DP")
    assert scene[2] == mirror.product_name(DAY, "DP", *products["newer"])


def test_backfill_skips_complete_days_and_shows_progress(s2_bucket, database_url, monkeypatch):
    days = [DAY + datetime.timedelta(n) for n in range(3)]
    for day in days:
        mirror.put_day(s2_bucket, day, ["DP"])
    assert _import("--date", str(days[1]))[0] == 0
    monkeypatch.setenv("RF_PROGRESS_INTERVAL", "0.05")
    code, reports, out = _import("--start", str(days[0]), "--stop", str(days[2]))
    assert code == 0, out
    assert [r["status"] for r in reports] == ["COMPLETE"] * 3
    # Not a TTY: a line now and then, and the last one when the backfill ends.
    progress = [line for line in out.splitlines() if line.startswith("sentinel2 days: ")]
    assert progress[-1].startswith("sentinel2 days: 2/2 (100%) after ")
    with db.connect(database_url) as conn:
        assert rows.count(conn, "scenes", owner="rf_pipelines") == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["landsat7", "--date", "2020-01-01"], "unknown source 'landsat7'"),
        (["stac:x@ftp://h", "--date", "2020-01-01"], "stac:COLLECTION@https://host/path"),
        (["sentinel2", "--date", "2020-13-01"], "--date '2020-13-01' is not a date"),
        (["sentinel2", "--start", "2020-02-01", "--stop", "2020-01-01"], "is after --stop"),
        (["sentinel2", "--start", "2020-02-01"], "needs both --start and --stop"),
        (["sentinel2", "--date", "2999-01-01"], "is in the future"),
        (["sentinel2", "--lookback", "-1"], "must be between 0 and 366"),
    ],
)
def test_bad_arguments_are_refused(s2_bucket, args, message):
    result = CliRunner().invoke(cli, ["import", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_worker_processes_import_after_the_parent_read_the_bucket(s2_bucket, database_url):
    from rf_pipelines.targets import files

    mirror.put_day(s2_bucket, DAY, ["DP", "DQ"])
    # The parent process reads first, so forked workers inherit its object-store client.
    assert files.read_bytes(f"{s2_bucket}/{mirror.tile_path(DAY, 'DP')}/tileInfo.json")
    code, days, out = _import("--date", str(DAY), "--workers", "2", "--local-scheduler")
    assert code == 0, out
    assert days[0]["status"] == "COMPLETE" and len(_scenes(database_url)) == 2


def test_completed_imports_are_reported_when_configured(s2_bucket, smtp, luigi_config):
    luigi_config("RfNotify", "on_import_complete", "true")
    for day in (DAY, DAY + datetime.timedelta(1)):
        mirror.put_day(s2_bucket, day, ["DP"])
    code, days, out = _import("--date", str(DAY + datetime.timedelta(1)), "--lookback", "1")
    assert code == 0, out
    [message] = smtp.messages  # one message for the command, not one a day
    assert "import sentinel2: 2/2 days complete" in message
    assert '"day": "2017-07-30"' in message


def test_a_day_whose_row_was_never_written_is_not_blocked(s2_bucket, database_url, monkeypatch):
    """A kill or a database outage between the manifest and the import_days row must not
    leave the day failing with "None" on every rerun (backfill days never re-discover)."""
    from rf_pipelines.catalog import imports
    from rf_pipelines.errors import BuildFailed
    from rf_pipelines.tasks import ImportDay
    from rf_pipelines.tasks.runner import build

    mirror.put_day(s2_bucket, DAY, ["DP", "DQ"])
    task = ImportDay(source="sentinel2", day=DAY, run_day=DAY)

    def killed(*args, **kwargs):
        raise RuntimeError("the worker died here")

    with monkeypatch.context() as patch:
        patch.setattr(imports, "start_day", killed)
        with pytest.raises(BuildFailed):
            build([task], local_scheduler=True)

    build([task], local_scheduler=True)  # the same command again
    with db.connect(database_url) as conn:
        report = imports.day_report(conn, "sentinel2", DAY)
    assert report["status"] == "COMPLETE" and report["discovered"] == 2


def test_a_manifest_without_its_day_row_still_finishes_the_day(
    s2_bucket, database_url, monkeypatch
):
    """A manifest published by an earlier version, before the row existed."""
    from rf_pipelines.catalog import imports
    from rf_pipelines.tasks import ImportDay
    from rf_pipelines.tasks.runner import build

    mirror.put_day(s2_bucket, DAY, ["DP"])
    calls = []
    original = imports.start_day

    def first_call_lost(conn, *args):
        calls.append(args)
        if len(calls) > 1:
            original(conn, *args)

    monkeypatch.setattr(imports, "start_day", first_call_lost)
    build([ImportDay(source="sentinel2", day=DAY, run_day=DAY)], local_scheduler=True)
    with db.connect(database_url) as conn:
        report = imports.day_report(conn, "sentinel2", DAY)
    assert report["status"] == "COMPLETE" and report["discovered"] == 1


def test_every_tile_of_a_product_listing_many_is_imported(s2_bucket, database_url, monkeypatch):
    """Before December 2016 one product (``S2A_OPER_PRD_MSIL1C_...``) listed many tiles under
    one name: a tile of it imported by one batch must not make the next batch skip the
    product's other tiles."""
    from rf_pipelines.tasks import imports

    monkeypatch.setattr(imports, "BATCH_SIZE", 1)
    name = "S2A_OPER_PRD_MSIL1C_PDMC_20160801T120000_R111_V20170729T153557_20170729T153557"
    squares = ["DP", "DQ", "EP"]
    for square in squares:
        info = mirror.tile_info(DAY, square)
        info["productName"] = name
        mirror.put_json(s2_bucket, f"{info['path']}/tileInfo.json", info)
    mirror.put_json(
        s2_bucket,
        f"products/{DAY.year}/{DAY.month}/{DAY.day}/{name}/productInfo.json",
        {"name": name, "tiles": [{"path": mirror.tile_path(DAY, sq)} for sq in squares]},
    )
    code, days, out = _import("--date", str(DAY), "--local-scheduler")
    assert code == 0, out
    assert days[0]["status"] == "COMPLETE" and days[0]["discovered"] == 3
    assert [s[2] for s in _scenes(database_url)] == [name] * 3


@pytest.mark.parametrize(
    "fault, kind", [("503", TransientError), ("refuse", TransientError), ("403", ConfigError)]
)
def test_a_store_failing_while_products_are_read_fails_discovery_by_kind(
    s2_bucket, local_services, monkeypatch, fault, kind
):
    """A store that fails while discovery reads the day's productInfo.json files: transient
    (the day is retried) or this worker's setting, naming the product; never a scene lost."""
    from bench.proxy import Proxy

    mirror.put_day(s2_bucket, DAY, ["DP", "DQ"])
    folder = f"{s2_bucket}/products/{DAY.year}/{DAY.month}/{DAY.day}"
    listed = files.list_folders(folder)  # listed while the store answers; read after it fails
    host, port = local_services["AWS_ENDPOINT_URL_S3"].rsplit("/", 1)[-1].rsplit(":", 1)
    with Proxy(host, port) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
        config.settings.cache_clear()
        monkeypatch.setattr(files, "list_folders", lambda _: listed)
        proxy.mode = fault
        with pytest.raises(kind, match=r"productInfo.json cannot be read") as raised:
            sources.get_source("sentinel2").discover(DAY)
    assert f"{folder}/{listed[0]}/productInfo.json" in str(raised.value)
    config.settings.cache_clear()


def test_a_lookback_reads_only_the_products_it_has_not_imported(
    s2_bucket, database_url, local_services, monkeypatch
):
    """A product's folder is named after it: re-checking a day reads the productInfo.json
    of the products published since, not of the whole day again."""
    from bench.proxy import Proxy

    mirror.put_day(s2_bucket, DAY, ["DP", "DQ"])
    assert _import("--date", str(DAY), "--local-scheduler")[0] == 0
    mirror.put_day(s2_bucket, DAY, ["EQ"])  # published after the night's run
    host, port = local_services["AWS_ENDPOINT_URL_S3"].rsplit("/", 1)[-1].rsplit(":", 1)
    with Proxy(host, port) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
        config.settings.cache_clear()
        code, days, out = _import(
            "--date", str(DAY + datetime.timedelta(1)), "--lookback", "1", "--local-scheduler"
        )
        heads = list(proxy.heads)
    config.settings.cache_clear()
    assert code == 0, out
    assert days[0]["day"] == str(DAY) and days[0]["discovered"] == 1, days
    read = sorted(h.split()[1].split("/")[-2] for h in heads if "productInfo.json" in h.split()[1])
    assert read == [mirror.product_name(DAY, "EQ")]
    assert len(_scenes(database_url)) == 3


def test_a_failed_scene_the_listener_stored_since_no_longer_keeps_its_day_partial(
    s2_bucket, database_url
):
    """The nightly run failed a scene, the listener stored it later: the look-back skips the
    imported product, so it must also forget the failure."""
    from rf_pipelines.catalog import imports
    from rf_pipelines.imagery import sentinel2

    mirror.put_day(s2_bucket, DAY, ["DP", "DQ"])
    broken = mirror.tile_info(DAY, "DQ")
    del broken["tileGeometry"]
    mirror.put_json(s2_bucket, f"{mirror.tile_path(DAY, 'DQ')}/tileInfo.json", broken)
    code, days, out = _import("--date", str(DAY), "--local-scheduler")
    assert days[0]["status"] == "PARTIAL", out

    good = mirror.tile_info(DAY, "DQ")
    record = sentinel2.scene_record(good, f"{s2_bucket}/{good['path']}/tileInfo.json", s2_bucket)
    record["scene_metadata"]["import_source"] = "sentinel2"
    with db.transaction(database_url) as conn:
        imports.upsert_scenes(conn, [record], imports.LISTENER_WRITTEN_BY)

    code, days, out = _import(
        "--date", str(DAY + datetime.timedelta(1)), "--lookback", "1", "--local-scheduler"
    )
    assert days[0]["day"] == str(DAY), out
    assert (days[0]["status"], days[0]["discovered"], days[0]["failures"]) == (
        "COMPLETE",
        0,
        {},
    ), out
