"""Imports by STAC API item search against a real STAC API server (rustac's stac-server)
loaded with the real items; Landsat MTLs read from a mirror bucket on the local object store."""

import http.server
import json
import threading
import uuid

import pytest
from click.testing import CliRunner

from rf_pipelines import config, sources
from rf_pipelines.catalog import db
from rf_pipelines.cli import cli
from tests import stac


@pytest.fixture()
def env(s3_bucket, database_url, tmp_path, monkeypatch):
    """Data root, catalog, and a Landsat mirror of the test's own (asset hrefs rewritten)."""
    monkeypatch.setenv("RF_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("RF_DATABASE_URL", database_url)
    root = f"s3://{s3_bucket}/landsat-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("RF_ASSET_MIRRORS", f"s3://usgs-landsat={root}")
    config.settings.cache_clear()
    return {"root": root, "monkeypatch": monkeypatch, "tmp": tmp_path, "db": database_url}


def _serve(env, items, source_env):
    server = stac.stac_api(items, env["tmp"] / f"stac-{uuid.uuid4().hex[:6]}")
    url = server.__enter__()
    for name in source_env:
        env["monkeypatch"].setenv(name, url)
    config.settings.cache_clear()
    return server, url


def _import(source, *args):
    result = CliRunner().invoke(cli, ["import", source, *args, "--local-scheduler"])
    days = [json.loads(line) for line in result.output.splitlines() if line.startswith('{"')]
    return result.exit_code, days, result.output


def _scenes(database_url):
    with db.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT name, scene_metadata->>'product_id', scene_metadata->>'category', "
            "modified_at, sun_elevation FROM scenes WHERE owner = 'rf_pipelines' ORDER BY name"
        )
        return cur.fetchall()


def test_landsat_by_stac_search_with_mtl_a_missing_mtl_fails_that_scene_alone(env):
    items = [stac.real_landsat_item("2020-10-31")]
    missing = stac.real_landsat_item("2015-07-10")
    missing["properties"]["datetime"] = "2020-10-31T10:00:00Z"  # same day, its MTL not mirrored
    stac.put_mtl(env["root"], items[0])
    server, _ = _serve(env, [*items, missing], ["RF_LANDSAT_STAC_URL"])
    try:
        code, days, out = _import("landsat", "--date", "2020-10-31")
        assert code == 3, out
        assert days[0]["status"] == "PARTIAL" and days[0]["discovered"] == 2
        [(ref, reason)] = days[0]["failures"].items()
        assert ref == missing["id"] and "MTL file" in reason and "is missing" in reason
        [first] = _scenes(env["db"])
        assert first[:3] == ("LC08_L2SP_001062_20201031_02", items[0]["id"], "T2")
        assert first[4] == pytest.approx(64.45083205)  # from the MTL

        stac.put_mtl(env["root"], missing, stem=stac.REAL_MTLS["2015-07-10"])
        code, days, out = _import("landsat", "--date", "2020-10-31")
        assert code == 0, out
        assert days[0]["status"] == "COMPLETE" and days[0]["failures"] == {}
        scenes = _scenes(env["db"])
        assert [s[0] for s in scenes] == [
            "LC08_L2SP_001062_20201031_02",
            "LC08_L2SP_005009_20150710_02",
        ]
        assert scenes[0][3] == first[3]  # the imported scene was not read or written again
    finally:
        server.__exit__(None, None, None)


def test_a_republished_landsat_product_updates_its_scene(env):
    item = stac.real_landsat_item("2020-10-31")
    text = (stac.LANDSAT / f"{stac.REAL_MTLS['2020-10-31']}.json").read_text()
    stac.put_mtl(env["root"], item)
    server, _ = _serve(env, [item], ["RF_LANDSAT_STAC_URL"])
    try:
        assert _import("landsat", "--date", "2020-10-31")[0] == 0
    finally:
        server.__exit__(None, None, None)
    newer, newer_text = stac.republished(item, text, "20201215", "T1")
    stac.put_mtl(env["root"], newer, text=newer_text)
    server, _ = _serve(env, [newer], ["RF_LANDSAT_STAC_URL"])
    try:
        # The nightly run of the next day re-checks the day before (--lookback 1).
        code, days, out = _import("landsat", "--date", "2020-11-01", "--lookback", "1")
        assert code == 0, out
    finally:
        server.__exit__(None, None, None)
    [scene] = _scenes(env["db"])
    assert scene[:3] == ("LC08_L2SP_001062_20201031_02", newer["id"], "T1")


def test_any_collection_is_searched_page_by_page_and_an_item_without_geometry_fails_alone(
    env, monkeypatch
):
    monkeypatch.setattr(sources, "STAC_PAGE_SIZE", 3)
    items = [stac.s2_item(id=f"S2A_13TDE_20231008_{n}_L2A") for n in range(7)]
    broken = stac.s2_item(id="S2A_13TDE_20231008_9_L2A", geometry=None)
    server, url = _serve(env, [*items, broken], [])
    try:
        code, days, out = _import(f"stac:sentinel-2-l2a@{url}", "--date", "2023-10-08")
    finally:
        server.__exit__(None, None, None)
    assert code == 3, out
    assert days[0]["discovered"] == 8 and days[0]["status"] == "PARTIAL"
    assert days[0]["failures"] == {broken["id"]: f"item {broken['id']}: the item has no geometry"}
    assert sorted(s[1] for s in _scenes(env["db"])) == sorted(i["id"] for i in items)


class _Failing(http.server.BaseHTTPRequestHandler):
    status = 503
    hits = 0

    def do_GET(self):  # noqa: N802 - http.server's name
        type(self).hits += 1
        self.send_response(self.status)
        self.end_headers()
        self.wfile.write(b'{"code": "unavailable"}')

    do_POST = do_GET  # noqa: N815

    def log_message(self, *args):
        pass


@pytest.mark.parametrize(
    ("status", "attempts", "message", "exit_code"),
    # 5xx: transient, so the command says "retry later" (75); 4xx: the day failed (3).
    [(503, 4, "answered 503", 75), (400, 1, "refused", 3)],
)
def test_an_erroring_api_is_retried_with_a_bound_then_the_day_fails(
    env, status, attempts, message, exit_code
):
    handler = type("Handler", (_Failing,), {"status": status, "hits": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        code, days, out = _import(
            f"stac:c@http://127.0.0.1:{server.server_port}", "--date", "2023-10-08"
        )
    finally:
        server.shutdown()
    assert code == exit_code
    assert message in out
    assert handler.hits == attempts  # 5xx: the bound of retry.call; 4xx: never retried


def test_an_unreachable_api_fails_the_day_with_a_clear_message(env):
    code, days, out = _import(f"stac:c@http://127.0.0.1:{stac.free_port()}", "--date", "2023-10-08")
    assert code == 75  # transient: retry later
    assert "is unreachable" in out
