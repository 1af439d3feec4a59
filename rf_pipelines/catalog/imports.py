"""Imported scenes and the bookkeeping of import days: batch upserts, failures, day status."""

import io
import logging

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from psycopg2.extras import execute_values

from rf_pipelines import ids
from rf_pipelines.catalog import db
from rf_pipelines.catalog.datasources import upsert_datasource
from rf_pipelines.catalog.rows import _dumps, jsonb
from rf_pipelines.catalog.scenes import SCENE_COLUMNS

log = logging.getLogger(__name__)

IMPORT_OWNER = "rf_pipelines"
# Every settable scene column but those of uploads (ingest_location, upload_id).
_SCENE_COLUMNS = tuple(sorted(SCENE_COLUMNS - {"ingest_location", "upload_id"}))


def scene_id(record):
    """The deterministic id of an imported scene: datasource and natural key."""
    return ids.scene_id_for_product(record["datasource"], record["scene_key"])


def upsert_scenes(conn, records, written_by):
    """Inserts or updates imported scenes in one statement. A re-published product (same
    datasource and scene key) updates its row only when it ranks at least as high as the
    product already there (``product_rank``: reprocessing baseline, processing date, tier):
    notifications arrive in any order, and an older product arriving late must not replace
    a newer one. The same product again (a redelivery, a re-import) updates it.

    Returns:
        the number of scenes the records name.
    """
    if not records:
        return 0
    sources = {}
    for name in {r["datasource"] for r in records}:
        sources[name] = upsert_datasource(conn, name, IMPORT_OWNER, visibility="PUBLIC")["id"]
    # One row per scene: when two records key the same scene, the newest product wins.
    unique = {}
    for record in records:
        key = scene_id(record)
        if key not in unique or _rank(record) >= _rank(unique[key]):
            unique[key] = record
    values = [_scene_values(r, sources[r["datasource"]], written_by) for r in unique.values()]
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _SCENE_COLUMNS if c != "id")
    with conn.cursor() as cur:
        execute_values(
            cur,
            f"INSERT INTO scenes ({', '.join(_SCENE_COLUMNS)}) VALUES %s "
            f"ON CONFLICT (id) DO UPDATE SET {updates}, modified_at = now() "
            "WHERE COALESCE(EXCLUDED.scene_metadata->>'product_rank', '') "
            ">= COALESCE(scenes.scene_metadata->>'product_rank', '')",
            values,
            page_size=1000,
        )
    return len(values)


def copy_scenes(conn, records, written_by, kept_writers):
    """Loads imported scenes with COPY: the rows ``upsert_scenes`` writes, under its rule
    that a product of a known scene replaces it only when it ranks at least as high. Scenes
    not in the catalog yet (a backfill's) are copied straight into scenes; the others go
    through a temporary table and one merge, where a product already stored from the same
    import source by one of ``kept_writers`` is left as it is, so reading the same records
    again changes no row (not even ``modified_at``).

    Returns:
        (written, unchanged): scenes inserted or updated, and scenes left as they were.
    """
    sources = import_datasources(conn, {r["datasource"] for r in records})
    return copy_scene_lines(conn, scene_lines(records, sources, written_by), kept_writers)


def import_datasources(conn, names):
    """The id of each datasource named, ``{name: id}``, made public when new."""
    return {
        name: upsert_datasource(conn, name, IMPORT_OWNER, visibility="PUBLIC")["id"]
        for name in names
    }


def scene_lines(records, datasource_ids, written_by):
    """The COPY lines of ``copy_scene_lines``, one a scene (of two records of the same scene,
    the newest product's), without the database: ``{scene id: line}``.

    Args:
        records: scene records.
        datasource_ids: the id of each record's datasource (``import_datasources``).
        written_by: the importing step, e.g. ``ImportGeoparquet@v1``.
    """
    unique = {}
    for record in records:
        key = str(scene_id(record))
        if key not in unique or _rank(record) >= _rank(unique[key]):
            unique[key] = record
    return {
        key: _copy_line(key, r, datasource_ids[r["datasource"]], written_by)
        for key, r in unique.items()
    }


def copy_scene_lines(conn, lines, kept_writers):
    """``copy_scenes`` of the lines ``scene_lines`` made.

    Returns:
        (written, unchanged): scenes inserted or updated, and scenes left as they were.
    """
    if not lines:
        return 0, 0
    with conn.cursor() as cur:
        _lz4_compression(cur)
        known = _known_scenes(cur, list(lines))
        fresh = [line for key, line in lines.items() if key not in known]
        written = _copy_fresh(cur, fresh)
        if written is None:  # another writer added some of them meanwhile: merge them all
            written, known = 0, set(lines)
        merged = [line for key, line in lines.items() if key in known]
        if merged:
            written += _merge(cur, merged, kept_writers)
    return written, len(lines) - written


def _lz4_compression(cur):
    """lz4 for the values this transaction compresses, where the server has it (PostgreSQL
    14 and later, built with lz4): a scene row's metadata and footprints are compressed
    with pglz otherwise, which takes about a fifth of a COPY's time (7,100 against 5,800
    to 6,800 rows/s measured). The values read back the same; a value stays as it was
    compressed, whatever the setting later."""
    cur.execute(
        "SELECT set_config('default_toast_compression', 'lz4', true) FROM pg_settings "
        "WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)"
    )


def _known_scenes(cur, ids):
    """Which of the scene ``ids`` (text) are in the catalog."""
    cur.execute("SELECT id::text FROM scenes WHERE id = ANY(%s::uuid[])", (ids,))
    return {row[0] for row in cur.fetchall()}


def _copy_fresh(cur, lines):
    """COPYs rows of new scenes into scenes; how many, or None when one of them exists
    by now (nothing is written then)."""
    if not lines:
        return 0
    cur.execute("SAVEPOINT fresh_scenes")
    try:
        _copy(cur, "scenes", lines)
    except psycopg2.errors.UniqueViolation:
        cur.execute("ROLLBACK TO SAVEPOINT fresh_scenes")
        return None
    cur.execute("RELEASE SAVEPOINT fresh_scenes")
    return len(lines)


def _copy(cur, table, lines):
    # Bytes, encoded once: a StringIO holds its text as 4 bytes a character and makes a
    # new text of each read for psycopg2 to encode (three times the CPU time).
    encoding = psycopg2.extensions.encodings[cur.connection.encoding]
    cur.copy_expert(
        f"COPY {table} ({', '.join(_COPY_COLUMNS)}) FROM STDIN",
        io.BytesIO("".join(lines).encode(encoding)),
        size=_COPY_READ_SIZE,
    )


def _merge(cur, lines, kept_writers):
    """COPYs rows into a temporary table and merges them into scenes; how many it wrote."""
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _SCENE_COLUMNS if c != "id")
    cur.execute(
        "CREATE TEMP TABLE IF NOT EXISTS scene_stage (LIKE scenes INCLUDING DEFAULTS) "
        "ON COMMIT DELETE ROWS"
    )
    _copy(cur, "scene_stage", lines)
    cur.execute(
        f"INSERT INTO scenes ({', '.join(_SCENE_COLUMNS)}) "
        f"SELECT {', '.join(_SCENE_COLUMNS)} FROM scene_stage "
        f"ON CONFLICT (id) DO UPDATE SET {updates}, modified_at = now() "
        "WHERE COALESCE(EXCLUDED.scene_metadata->>'product_rank', '') "
        ">= COALESCE(scenes.scene_metadata->>'product_rank', '') "
        "AND NOT (scenes.scene_metadata->>'product_id' "
        "= EXCLUDED.scene_metadata->>'product_id' "
        "AND scenes.scene_metadata->>'import_source' "
        "IS NOT DISTINCT FROM EXCLUDED.scene_metadata->>'import_source' "
        "AND scenes.written_by = ANY(%s))",
        (list(kept_writers),),
    )
    written = cur.rowcount
    cur.execute("TRUNCATE scene_stage")  # the next batch of this transaction starts empty
    return written


# COPY reads its text 8 MB at a time, not psycopg2's 8 kB: each read takes the GIL back
# from the thread making the next batch's records (a switch every 5 ms at most).
_COPY_READ_SIZE = 8 << 20
# The columns COPY fills, in the order _copy_line writes them.
_COPY_COLUMNS = (
    "id",
    "name",
    "owner",
    "datasource_id",
    "visibility",
    "acquisition_date",
    "cloud_cover",
    "sun_azimuth",
    "sun_elevation",
    "tile_footprint_4326",
    "tile_footprint_3857",
    "data_footprint_4326",
    "data_footprint_3857",
    "scene_metadata",
    "metadata_files",
    "thumbnail_status",
    "boundary_status",
    "written_by",
)
# COPY's text format: a backslash starts an escape; tabs and line ends end fields and rows.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_line(key, record, datasource_id, written_by):
    """A scene row in COPY's text format: the values ``_scene_values`` gives."""
    metadata = _stored_metadata(record)
    data, tile = record["footprints"]["data"], record["footprints"]["tile"]
    tile_4326, tile_3857 = _dumps(tile["4326"]), _dumps(tile["3857"])
    same = data is tile  # one footprint for both, as imports make them: written once
    fields = (
        str(key),
        record["scene_key"],
        IMPORT_OWNER,
        str(datasource_id),
        "PUBLIC",
        record["acquisition_date"].isoformat(),
        _copy_number(record["cloud_cover"]),
        _copy_number(record["sun_azimuth"]),
        _copy_number(record["sun_elevation"]),
        tile_4326,
        tile_3857,
        tile_4326 if same else _dumps(data["4326"]),
        tile_3857 if same else _dumps(data["3857"]),
        _dumps(metadata),
        "{" + ",".join(map(_array_item, record["metadata_files"])) + "}",
        "SUCCESS",
        "SUCCESS",
        written_by,
    )
    return "\t".join(map(_copy_text, fields)) + "\n"


def _copy_text(field):
    if field is None:
        return "\\N"
    if "\\" in field or "\t" in field or "\n" in field or "\r" in field:
        return field.translate(_COPY_ESCAPES)
    return field  # the usual case: nothing to escape


def _copy_number(value):
    return None if value is None else repr(float(value))


def _array_item(value):
    if value is None:
        return "NULL"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _rank(record):
    return record.get("product_rank") or ""


def _stored_metadata(record):
    """The scene_metadata a record is stored with (the upsert's and COPY's alike)."""
    return {
        **record["scene_metadata"],
        "product_id": record["product_id"],
        "product_rank": _rank(record),
        "bands": record["bands"],
        "thumbnails": record["thumbnails"],
    }


def _scene_values(record, datasource_id, written_by):
    metadata = _stored_metadata(record)
    data, tile = record["footprints"]["data"], record["footprints"]["tile"]
    row = {
        "id": scene_id(record),
        "name": record["scene_key"],
        "owner": IMPORT_OWNER,
        "datasource_id": datasource_id,
        "visibility": "PUBLIC",
        "acquisition_date": record["acquisition_date"],
        "cloud_cover": record["cloud_cover"],
        "sun_azimuth": record["sun_azimuth"],
        "sun_elevation": record["sun_elevation"],
        "tile_footprint_4326": jsonb(tile["4326"]),
        "tile_footprint_3857": jsonb(tile["3857"]),
        "data_footprint_4326": jsonb(data["4326"]),
        "data_footprint_3857": jsonb(data["3857"]),
        "scene_metadata": jsonb(metadata),
        "metadata_files": record["metadata_files"],
        "thumbnail_status": "SUCCESS",
        "boundary_status": "SUCCESS",
        "written_by": written_by,
    }
    return tuple(row[c] for c in _SCENE_COLUMNS)


# The listener's writer (``rf-pipelines listen``); ImportBatch writes as ``ImportBatch@vN``.
LISTENER_WRITTEN_BY = "listen@v1"


def imported_products(conn, source_name, product_ids, writers):
    """The subset of ``product_ids`` already imported from this source by one of ``writers``
    (the importing steps at their current versions: a scene an older version wrote is
    imported again), in one query: one probe of the product index per id (a file's 10,000
    ids in 0.1 to 0.3 s whatever the catalog's size; as ``= ANY(ids)`` the planner scanned
    every scene of the owner, reading each one's metadata: 2.3 s in a catalog of 100,000)."""
    with conn.cursor() as cur:
        cur.execute(
            # LIMIT keeps the subquery apart: a nested loop over the ids, not a scan.
            "SELECT p.id FROM unnest(%s::text[]) AS p(id) CROSS JOIN LATERAL "
            "(SELECT 1 FROM scenes WHERE owner = %s AND scene_metadata->>'product_id' = p.id "
            "AND scene_metadata->>'import_source' = %s AND written_by = ANY(%s) LIMIT 1) AS s",
            (list(product_ids), IMPORT_OWNER, source_name, list(writers)),
        )
        return {row[0] for row in cur.fetchall()}


def refresh_statistics(database_url, at_least=5000):
    """ANALYZE the scenes table when most of its rows are newer than its statistics (at
    least ``at_least`` of them): a new catalog's first import. Without statistics on the
    product index, ``imported_products``'s 500 ids look like the whole table to the planner,
    which then scans every scene already written for each batch (140 ms a batch by the 40th
    of a 20,000-scene day); autovacuum analyzes only once a minute.

    Best effort, on a connection of its own: a role that does not own the table, or an
    ANALYZE that fails (a statement timeout), leaves the statistics as they are and the
    import goes on. Returns whether it ran ANALYZE (which passes over the table while
    another ANALYZE holds it).

    Raises:
        ServiceUnavailable: the database cannot be reached (the import could not go on).
    """
    with db.connect(database_url) as conn:
        conn.autocommit = True
        return _refresh_statistics(conn, at_least)


def _refresh_statistics(conn, at_least):
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT s.n_live_tup, s.n_mod_since_analyze, pg_has_role(c.relowner, 'USAGE') "
                "FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid "
                "WHERE s.relid = 'scenes'::regclass"
            )
            live, modified, owner = cur.fetchone() or (0, 0, False)
            if not owner or modified < max(at_least, live // 2):
                return False
            cur.execute("ANALYZE (SKIP_LOCKED) scenes")  # another worker's ANALYZE will do
            return True
    except psycopg2.Error as err:
        log.warning("scenes' statistics were left as they are: %s", str(err).strip())
        return False


def start_day(conn, source, day, discovered, manifest_url):
    """Records a day as RUNNING with the count of scenes discovered (again on a re-check)."""
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO import_days (source, day, status, discovered, manifest_url) "
            "VALUES (%s, %s, 'RUNNING', %s, %s) ON CONFLICT (source, day) DO UPDATE SET "
            "status = 'RUNNING', discovered = EXCLUDED.discovered, "
            "manifest_url = EXCLUDED.manifest_url, checked_at = now(), modified_at = now()",
            (source, day, discovered, manifest_url),
        )


def record_failures(conn, source, day, failures):
    """Stores failed scenes (ref -> reason) and marks the day PARTIAL (a day import's:
    ``source`` is an import source; a file's failures are under ``file_failures_source``,
    which has no days)."""
    with conn.cursor() as cur:
        execute_values(
            cur,
            "INSERT INTO import_failures (source, day, ref, reason) VALUES %s "
            "ON CONFLICT (source, day, ref) DO UPDATE SET reason = EXCLUDED.reason, "
            "failed_at = now()",
            [(source, day, ref, reason) for ref, reason in failures.items()],
        )
        cur.execute(
            "UPDATE import_days SET status = 'PARTIAL', modified_at = now() "
            "WHERE source = %s AND day = %s",
            (source, day),
        )


def clear_failures(conn, source, day, refs):
    """Forgets failures of scenes that have now been imported."""
    with conn.cursor() as cur:
        cur.execute(
            "DELETE FROM import_failures WHERE source = %s AND day = %s AND ref = ANY(%s)",
            (source, day, list(refs)),
        )


def forget_failures(conn, source, refs_by_day):
    """Forgets failures of scenes now imported, ``{day: [ref, ...]}``, in one statement."""
    pairs = [(day, ref) for day, refs in refs_by_day.items() for ref in refs]
    if not pairs:
        return
    with conn.cursor() as cur:
        cur.execute("SELECT EXISTS (SELECT 1 FROM import_failures WHERE source = %s)", (source,))
        if not cur.fetchone()[0]:
            return  # nothing to forget: the usual case, without a join on every ref
        cur.execute(
            "DELETE FROM import_failures f USING unnest(%s::date[], %s::text[]) AS d(day, ref) "
            "WHERE f.source = %s AND f.day = d.day AND f.ref = d.ref",
            ([day for day, _ in pairs], [ref for _, ref in pairs], source),
        )


def clear_imported_failures(conn, source, day, product_of, writers):
    """Forgets the day's failures whose product ``product_of(ref)`` (None: unknown without
    reading it) has been imported since by one of ``writers`` (the listener, say): a
    re-check skips imported products, so their failures would keep the day PARTIAL."""
    with conn.cursor() as cur:
        cur.execute("SELECT ref FROM import_failures WHERE source = %s AND day = %s", (source, day))
        products = {ref: product_of(ref) for (ref,) in cur.fetchall()}
    done = imported_products(conn, source, [p for p in products.values() if p], writers)
    clear_failures(conn, source, day, [ref for ref, p in products.items() if p in done])


def finish_day(conn, source, day):
    """Marks a day COMPLETE when no failure is left, PARTIAL otherwise; returns the status."""
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE import_days SET status = CASE WHEN EXISTS (SELECT 1 FROM import_failures f "
            "WHERE f.source = %s AND f.day = %s) THEN 'PARTIAL'::import_status "
            "ELSE 'COMPLETE'::import_status END, modified_at = now() "
            "WHERE source = %s AND day = %s RETURNING status",
            (source, day, source, day),
        )
        row = cur.fetchone()
        return row[0] if row else None


def complete_days(conn, source, first, last):
    """The days in [first, last] whose import is COMPLETE, in one query."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT day FROM import_days WHERE source = %s AND day BETWEEN %s AND %s "
            "AND status = 'COMPLETE'",
            (source, first, last),
        )
        return {row[0] for row in cur.fetchall()}


def discovered_counts(conn, source, days):
    """{day: scenes its last discovery listed} for those of ``days`` that have a row (one
    query)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT day, discovered FROM import_days WHERE source = %s AND day = ANY(%s)",
            (source, list(days)),
        )
        return dict(cur.fetchall())


def day_report(conn, source, day):
    """The day's status, counts and failures, or None when it never ran."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT status, discovered, manifest_url FROM import_days "
            "WHERE source = %s AND day = %s",
            (source, day),
        )
        row = cur.fetchone()
        if row is None:
            return None
        cur.execute(
            "SELECT ref, reason FROM import_failures WHERE source = %s AND day = %s ORDER BY ref",
            (source, day),
        )
        failures = dict(cur.fetchall())
    return {
        "source": source,
        "day": str(day),
        "status": row[0],
        "discovered": row[1],
        "manifest": row[2],
        "failures": failures,
    }


def day_scenes(conn, source, day):
    """A short line per scene imported from ``source`` acquired on ``day`` (UTC)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT s.id, s.name, d.name, s.acquisition_date, s.cloud_cover, s.sun_elevation "
            "FROM scenes s JOIN datasources d ON d.id = s.datasource_id "
            "WHERE s.owner = %s AND s.scene_metadata->>'import_source' = %s "
            "AND s.acquisition_date >= %s AND s.acquisition_date < %s::date + 1 ORDER BY s.name",
            (IMPORT_OWNER, source, day, day),
        )
        keys = ("id", "name", "datasource", "acquired", "cloud_cover", "sun_elevation")
        return [dict(zip(keys, row, strict=True)) for row in cur.fetchall()]


def days_finished_since(conn, source, days, since):
    """How many of ``days`` finished (COMPLETE or PARTIAL) after ``since``."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM import_days WHERE source = %s AND day = ANY(%s) "
            "AND status IN ('COMPLETE', 'PARTIAL') AND modified_at >= %s",
            (source, list(days), since),
        )
        return cur.fetchone()[0]


def release_day(conn, source, day):
    """A day still RUNNING when the run importing it ended becomes INCOMPLETE (a rerun of
    the same command resumes it); returns True when it was RUNNING."""
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE import_days SET status = 'INCOMPLETE', modified_at = now() "
            "WHERE source = %s AND day = %s AND status = 'RUNNING'",
            (source, day),
        )
        return cur.rowcount == 1


def file_failures_source(source):
    """The ``import_failures.source`` of the rows of stac-geoparquet files that failed:
    kept apart from the day imports' failures, which decide a day's status."""
    return f"geoparquet:{source}"
