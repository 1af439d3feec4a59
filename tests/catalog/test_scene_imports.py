"""Imported scenes in the catalog: jsonb values as metadata has them, and the statistics a new
catalog's first import needs."""

import datetime
import json
import math
import time
import uuid

import numpy as np
import pytest

from rf_pipelines.catalog import db, imports
from rf_pipelines.imagery import sentinel2
from tests.conftest import TESTDATA

L1C = TESTDATA / "sentinel2" / "sentinel-s2-l1c_tiles_19_U_DP_2017_7_29_0_tileInfo.json"


def _records(count):
    template = json.loads(L1C.read_text())
    records = []
    for n in range(count):
        info = dict(template, path=f"tiles/19/U/DP/2017/7/29/{n}")
        info["productName"] = f"S2A_MSIL1C_20170729T{n:06d}_N0205_R111_T19UDP_20170729T153557"
        record = sentinel2.scene_record(info, f"s3://b/{info['path']}/tileInfo.json", "s3://b")
        record["scene_metadata"]["import_source"] = "sentinel2"
        records.append(record)
    return records


@pytest.mark.parametrize("beyond_64_bits", [None, 2**70])
def test_metadata_values_json_cannot_write_are_stored(database_url, beyond_64_bits):
    """NaN (PostgreSQL refuses it in jsonb), numpy numbers and datetimes, as metadata
    parsers hand them over; also beside an integer orjson refuses (written by json)."""
    [record] = _records(1)
    record["scene_metadata"].update(
        big=beyond_64_bits,
        nan=math.nan,
        float32=np.float32(1.5),
        int64=np.int64(7),
        when=datetime.datetime(2017, 7, 29, 15, 35, tzinfo=datetime.UTC),
    )
    with db.transaction(database_url) as conn:
        imports.upsert_scenes(conn, [record], "Test@v1")
    with db.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT scene_metadata FROM scenes")
        [(stored,)] = cur.fetchall()
    assert stored["nan"] is None
    assert (stored["float32"], stored["int64"]) == (1.5, 7)
    assert stored["when"] == "2017-07-29 15:35:00+00:00"
    assert stored["big"] == beyond_64_bits


def _statistics(conn):
    with conn.cursor() as cur:
        cur.execute(
            "SELECT last_analyze IS NOT NULL, n_mod_since_analyze FROM pg_stat_user_tables "
            "WHERE relid = 'scenes'::regclass"
        )
        return cur.fetchone()


def _without_autovacuum(database_url):
    """So that autovacuum's own ANALYZE (after 50 new rows) cannot race the test's."""
    with db.transaction(database_url) as conn, conn.cursor() as cur:
        cur.execute("ALTER TABLE scenes SET (autovacuum_enabled = off)")


def test_a_first_import_analyzes_the_new_table_once_it_has_grown(database_url):
    """Without statistics, the batches' product lookups read every imported scene (140 ms a
    batch by the 40th of a 20,000-scene day, in bench/imports.py); autovacuum analyzes once
    a minute at best."""
    _without_autovacuum(database_url)
    records = _records(6000)
    assert not imports.refresh_statistics(database_url)  # empty: nothing to gain
    with db.transaction(database_url) as conn:
        imports.upsert_scenes(conn, records[:100], "Test@v1")
    time.sleep(1.5)  # the server counts a transaction's writes within a second
    assert not imports.refresh_statistics(database_url)  # 100 new rows: not worth it
    with db.transaction(database_url) as conn:
        imports.upsert_scenes(conn, records[100:], "Test@v1")
    deadline = time.monotonic() + 10
    while not imports.refresh_statistics(database_url):
        assert time.monotonic() < deadline, "the 5,900 new rows were never counted"
        time.sleep(0.2)
    with db.connect(database_url) as conn:
        analyzed, modified = _statistics(conn)
    assert analyzed and modified == 0
    assert not imports.refresh_statistics(database_url)  # fresh statistics: not again


def test_a_role_that_does_not_own_the_table_imports_without_analyzing(database_url, admin_url):
    """PostgreSQL only warns when a role that does not own a table analyzes it: such a role
    does not try (it would try before every batch)."""
    _without_autovacuum(database_url)
    role = f"rf_reader_{uuid.uuid4().hex[:8]}"
    with db.connect(admin_url) as admin:
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        with db.connect(database_url) as conn, conn.cursor() as cur:
            cur.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"')
            conn.commit()
        with db.transaction(database_url) as conn:
            imports.upsert_scenes(conn, _records(6000), "Test@v1")
        time.sleep(1.5)
        reader = database_url.replace("://postgres@", f"://{role}@")
        assert reader != database_url
        assert not imports.refresh_statistics(reader)
        with db.connect(database_url) as conn:
            analyzed, modified = _statistics(conn)
        assert not analyzed and modified >= 6000
        assert imports.refresh_statistics(database_url)  # its owner does
    finally:
        with db.connect(database_url) as conn:  # its grants on this test's tables
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'DROP OWNED BY "{role}"')
        with db.connect(admin_url) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'DROP ROLE IF EXISTS "{role}"')


def _rows(database_url):
    with db.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT id, name, owner, datasource_id, visibility, acquisition_date, cloud_cover, "
            "sun_azimuth, sun_elevation, tile_footprint_4326, tile_footprint_3857, "
            "data_footprint_4326, data_footprint_3857, scene_metadata, metadata_files, "
            "thumbnail_status, boundary_status, ingest_status, written_by FROM scenes ORDER BY id"
        )
        return cur.fetchall()


def test_copy_scenes_writes_the_rows_upsert_scenes_writes(database_url):
    records = _records(3)
    records[0]["scene_metadata"].update(nan=math.nan, when=datetime.datetime(2020, 1, 2))
    records[1]["cloud_cover"] = None
    records[2]["metadata_files"] = ['s3://b/with "quote" and \\ and\ttab', None]
    with db.transaction(database_url) as conn:
        imports.upsert_scenes(conn, records, "W@v1")
    upserted = _rows(database_url)
    with db.transaction(database_url) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM scenes")
    with db.transaction(database_url) as conn:
        assert imports.copy_scenes(conn, records, "W@v1", ["W@v1"]) == (3, 0)
    assert _rows(database_url) == upserted
    with db.transaction(database_url) as conn:  # the same records again: nothing changes
        assert imports.copy_scenes(conn, records, "W@v1", ["W@v1"]) == (0, 3)


def test_scenes_another_writer_added_meanwhile_are_merged(database_url, monkeypatch):
    records = _records(2)
    with db.transaction(database_url) as conn:
        imports.upsert_scenes(conn, records[:1], "Other@v1")
    before = _rows(database_url)
    # As if the other writer's scene arrived between the look-up and the COPY.
    monkeypatch.setattr(imports, "_known_scenes", lambda cur, ids: set())
    with db.transaction(database_url) as conn:
        assert imports.copy_scenes(conn, records, "W@v1", ["Other@v1"]) == (1, 1)
    after = _rows(database_url)
    assert len(after) == 2 and before[0] in after  # the other writer's product kept


def test_copied_scenes_are_compressed_with_lz4_in_their_transaction_alone(database_url):
    records = _records(1)
    records[0]["scene_metadata"]["notes"] = "a long note " * 500  # stored compressed
    with db.transaction(database_url) as conn:
        imports.copy_scenes(conn, records, "W@v1", ["W@v1"])
    with db.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT pg_column_compression(scene_metadata), "
            "current_setting('default_toast_compression'), scene_metadata->>'notes' FROM scenes"
        )
        assert cur.fetchall() == [("lz4", "pglz", "a long note " * 500)]
