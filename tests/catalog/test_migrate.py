"""Migrations: applied once, recorded, safe to run again and concurrently."""

from concurrent.futures import ThreadPoolExecutor

from rf_pipelines.catalog import db, migrate


def _tables(url):
    with db.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {row[0] for row in cur.fetchall()}


def test_migrate_twice_applies_once(empty_database):
    assert migrate.current_version(empty_database) == 0
    first = migrate.migrate(empty_database)
    assert first == [(v, n) for v, n, _ in migrate.available()]
    assert migrate.migrate(empty_database) == []
    assert migrate.current_version(empty_database) == first[-1][0]
    assert {
        "uploads",
        "scenes",
        "images",
        "bands",
        "thumbnails",
        "datasources",
        "projects",
        "project_scenes",
        "task_markers",
        "schema_migrations",
    } <= _tables(empty_database)


def test_concurrent_migrations_do_not_collide(empty_database):
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: migrate.migrate(empty_database), range(4)))
    assert sum(len(r) for r in results) == len(migrate.available())


def test_status_enums_match_raster_foundry(database_url):
    with db.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT enum_range(NULL::upload_status)::text[], "
            "enum_range(NULL::ingest_status)::text[]"
        )
        upload, ingest = cur.fetchone()
    assert upload == [
        "CREATED",
        "UPLOADING",
        "UPLOADED",
        "QUEUED",
        "PROCESSING",
        "COMPLETE",
        "FAILED",
        "ABORTED",
    ]
    assert ingest == ["NOTINGESTED", "TOBEINGESTED", "INGESTING", "INGESTED", "FAILED"]
