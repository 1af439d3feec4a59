"""Deterministic ids and upserts: a rerun updates rows, never duplicates them."""

import uuid

import pytest

from rf_pipelines import ids
from rf_pipelines.catalog import datasources, db, rows, scenes, uploads
from rf_pipelines.catalog.statuses import IngestStatus, UploadStatus
from rf_pipelines.errors import IllegalTransition, InvalidInput, NotFound

FOOTPRINT = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}


def test_ids_are_deterministic_and_distinct():
    upload = uuid.uuid4()
    assert ids.scene_id_for_upload(upload, "a.tif") == ids.scene_id_for_upload(upload, "a.tif")
    assert ids.scene_id_for_upload(upload, "a.tif") != ids.scene_id_for_upload(upload, "b.tif")
    assert ids.scene_id_for_product("Landsat 8", "LC08_X") != ids.scene_id_for_product(
        "Sentinel-2", "LC08_X"
    )


def _scene(conn, product, cloud_cover):
    source = datasources.upsert_datasource(conn, "Landsat 8 test", "rf", visibility="PUBLIC")
    return scenes.upsert_scene(
        conn,
        {
            "id": ids.scene_id_for_product("Landsat 8 test", product),
            "name": product,
            "owner": "rf",
            "datasource_id": source["id"],
            "visibility": "PUBLIC",
            "cloud_cover": cloud_cover,
            "tile_footprint_4326": FOOTPRINT,
            "metadata_files": [f"s3://bucket/{product}_MTL.txt"],
            "written_by": "Test@v1",
        },
    )


def test_upsert_twice_keeps_one_row_with_the_new_values(database_url):
    product = f"LC08_L1TP_{uuid.uuid4().hex[:8]}"
    with db.transaction(database_url) as conn:
        first = _scene(conn, product, 10.0)
    with db.transaction(database_url) as conn:
        second = _scene(conn, product, 55.5)
        assert rows.count(conn, "scenes", name=product) == 1
        assert rows.count(conn, "datasources", name="Landsat 8 test") == 1
    assert second["id"] == first["id"]
    assert second["cloud_cover"] == pytest.approx(55.5)
    assert second["created_at"] == first["created_at"]
    assert second["modified_at"] > first["modified_at"]
    assert second["tile_footprint_4326"] == FOOTPRINT
    assert second["metadata_files"] == [f"s3://bucket/{product}_MTL.txt"]


def _upload(database_url, status=UploadStatus.UPLOADED):
    upload_id = uuid.uuid4()
    with db.transaction(database_url) as conn:
        uploads.create_upload(conn, upload_id, "tester", "LOCAL", ["a.tif"], status=status)
    return upload_id


def test_legal_status_path_is_followed(database_url):
    upload_id = _upload(database_url)
    for status in (
        UploadStatus.PROCESSING,
        UploadStatus.FAILED,
        UploadStatus.PROCESSING,
        UploadStatus.COMPLETE,
    ):
        with db.transaction(database_url) as conn:
            uploads.set_upload_status(conn, upload_id, status, reason=f"now {status}")
    with db.connect(database_url) as conn:
        assert uploads.get_upload(conn, upload_id)["upload_status"] == "COMPLETE"


def test_illegal_status_transition_is_rejected_and_nothing_changes(database_url):
    upload_id = _upload(database_url, status=UploadStatus.CREATED)
    with pytest.raises(
        IllegalTransition, match=f"upload {upload_id}: cannot go from CREATED to COMPLETE"
    ):
        with db.transaction(database_url) as conn:
            uploads.set_upload_status(conn, upload_id, UploadStatus.COMPLETE)
    with db.connect(database_url) as conn:
        row = uploads.get_upload(conn, upload_id)
    assert row["upload_status"] == "CREATED"
    assert row["status_reason"] is None


def test_illegal_ingest_transition_is_rejected(database_url):
    product = f"LC08_{uuid.uuid4().hex[:8]}"
    with db.transaction(database_url) as conn:
        scene_id = _scene(conn, product, 1.0)["id"]
        scenes.set_ingest_status(conn, scene_id, IngestStatus.TOBEINGESTED)
    with pytest.raises(IllegalTransition, match="TOBEINGESTED to INGESTED"):
        with db.transaction(database_url) as conn:
            scenes.set_ingest_status(conn, scene_id, IngestStatus.INGESTED)


def test_unknown_and_malformed_upload_ids(database_url):
    with db.connect(database_url) as conn:
        with pytest.raises(NotFound, match="does not exist"):
            uploads.get_upload(conn, uuid.uuid4())
        with pytest.raises(InvalidInput, match="'../etc' is not a UUID"):
            uploads.get_upload(conn, "../etc")
