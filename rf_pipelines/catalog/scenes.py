"""Scenes: one acquisition of one datasource, with footprints, metadata and ingest status."""

from rf_pipelines import ids
from rf_pipelines.catalog.db import dict_cursor
from rf_pipelines.catalog.rows import fetch_one, upsert
from rf_pipelines.catalog.statuses import INGEST_TRANSITIONS, IngestStatus, check_transition
from rf_pipelines.errors import AlreadyRunning, NotFound

# Columns a caller may set; the rest (timestamps, statuses) are managed here.
SCENE_COLUMNS = frozenset(
    {
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
        "ingest_location",
        "thumbnail_status",
        "boundary_status",
        "upload_id",
        "written_by",
    }
)


def parse_scene_id(value):
    """Validates a user-supplied scene id (raises InvalidInput when it is not a UUID)."""
    return ids.parse_uuid(value, "scene id")


def upsert_scene(conn, scene):
    """Inserts a scene or updates the one with the same (deterministic) id.

    Args:
        conn: open connection.
        scene: dict with at least id, name, owner, datasource_id and written_by.

    Returns:
        dict of the stored row.

    Raises:
        ValueError: a column that is not settable (a programming error, not user input).
    """
    unknown = set(scene) - SCENE_COLUMNS
    if unknown:
        raise ValueError(f"scene {scene.get('id')}: unknown columns {sorted(unknown)}")
    return upsert(conn, "scenes", scene)


def get_scene(conn, scene_id, lock=False):
    """The scene row.

    Raises:
        NotFound: no scene with this id.
    """
    row = fetch_one(conn, "scenes", scene_id, lock=lock)
    if row is None:
        raise NotFound(f"scene {scene_id} does not exist")
    return row


def set_ingest_status(conn, scene_id, status, reason=None):
    """Moves a scene's ingest status if the transition is allowed.

    Raises:
        NotFound: no such scene.
        IllegalTransition: the move is not allowed; nothing is written.
    """
    current = get_scene(conn, scene_id, lock=True)
    check_transition(INGEST_TRANSITIONS, f"scene {scene_id}", current["ingest_status"], status)
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE scenes SET ingest_status = %s, status_reason = %s, modified_at = now() "
            "WHERE id = %s",
            (str(status), reason, str(scene_id)),
        )


def register_scene(conn, scene, images=(), thumbnails=(), project_id=None):
    """Upserts a scene with its images (each with a "bands" list) and thumbnails, and links
    it to a project; every row has a deterministic id, so a rerun updates in place.

    A scene registered again (its source file was made anew: a step's version was bumped, or
    the file replaced) that had been queued for ingest or ingested goes back to NOTINGESTED
    first: its tiles were made from what it was.

    Returns:
        dict of the stored scene row.

    Raises:
        AlreadyRunning: the scene is being ingested now.
    """
    try:
        status = get_scene(conn, scene["id"], lock=True)["ingest_status"]
    except NotFound:
        status = IngestStatus.NOTINGESTED
    if status != IngestStatus.NOTINGESTED:
        forget_ingest(conn, scene["id"], "its source was made again")
    stored = upsert_scene(conn, scene)
    for image in images:
        image = dict(image)
        bands = image.pop("bands", [])
        upsert(conn, "images", image)
        for band in bands:
            upsert(conn, "bands", band, key=("image_id", "number"), touch_modified=False)
    for thumbnail in thumbnails:
        upsert(conn, "thumbnails", thumbnail, key=("scene_id", "size"), touch_modified=False)
    if project_id is not None:
        upsert(
            conn,
            "project_scenes",
            {"project_id": project_id, "scene_id": scene["id"]},
            key=("project_id", "scene_id"),
            touch_modified=False,
        )
    return stored


def scene_details(conn, scene_id):
    """The scene with its images, bands, thumbnails and project ids, as one dict.

    Raises:
        NotFound: no scene with this id.
    """
    scene = get_scene(conn, scene_id)
    with dict_cursor(conn) as cur:
        cur.execute("SELECT * FROM images WHERE scene_id = %s ORDER BY filename", (scene_id,))
        scene["images"] = cur.fetchall()
        for image in scene["images"]:
            cur.execute("SELECT * FROM bands WHERE image_id = %s ORDER BY number", (image["id"],))
            image["bands"] = cur.fetchall()
        cur.execute(
            "SELECT size, width, height, url FROM thumbnails WHERE scene_id = %s ORDER BY size",
            (scene_id,),
        )
        scene["thumbnails"] = cur.fetchall()
        cur.execute("SELECT project_id FROM project_scenes WHERE scene_id = %s", (scene_id,))
        scene["project_ids"] = [row["project_id"] for row in cur.fetchall()]
    return scene


def band_sources(conn, scene_id):
    """The scene's bands as (url, band index in the file, name), in order: an uploaded
    scene's image bands, else an imported scene's band files (one band each).

    Raises:
        NotFound: no such scene.
    """
    scene = scene_details(conn, scene_id)
    if scene["images"]:
        return [
            (image["source_uri"], band["number"], band["name"])
            for image in scene["images"]
            for band in image["bands"]
        ]
    bands = (scene.get("scene_metadata") or {}).get("bands") or []
    return [(b["url"], 1, b["name"]) for b in bands if b.get("url")]


def queue_for_ingest(conn, scene_id):
    """Moves a scene that is NOTINGESTED or FAILED to TOBEINGESTED; returns its status."""
    status = get_scene(conn, scene_id, lock=True)["ingest_status"]
    if status in (IngestStatus.NOTINGESTED, IngestStatus.FAILED):
        set_ingest_status(conn, scene_id, IngestStatus.TOBEINGESTED)
        return IngestStatus.TOBEINGESTED
    return status


def start_ingest(conn, scene_id):
    """Moves the scene to INGESTING as an ingest step starts, from whatever state an earlier
    run left (queued, failed, never queued, or ingested with older tiles), through the
    checked transitions. Every step calls it, so a rerun that has only the last steps left
    (the scene COG done, the tiles not) still finishes with legal moves.

    Returns:
        the status the scene had.
    """
    status = get_scene(conn, scene_id, lock=True)["ingest_status"]
    if status in (IngestStatus.NOTINGESTED, IngestStatus.INGESTED):
        set_ingest_status(conn, scene_id, IngestStatus.TOBEINGESTED)
    if status != IngestStatus.INGESTING:
        set_ingest_status(conn, scene_id, IngestStatus.INGESTING)
    return status


def forget_ingest(conn, scene_id, reason="its source file was replaced"):
    """Takes a scene back to NOTINGESTED without its ingest location (its source file is
    being replaced, so its tiles are stale), through the checked transitions. A scene that
    does not exist yet is left alone.

    Raises:
        AlreadyRunning: the scene is INGESTING now.
    """
    try:
        status = get_scene(conn, scene_id, lock=True)["ingest_status"]
    except NotFound:
        return
    if status == IngestStatus.INGESTING:
        raise AlreadyRunning(f"scene {scene_id} is being ingested; try again when that ends")
    if status in (IngestStatus.INGESTED, IngestStatus.FAILED):
        set_ingest_status(conn, scene_id, IngestStatus.TOBEINGESTED)
    set_ingest_status(conn, scene_id, IngestStatus.NOTINGESTED, reason)
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE scenes SET ingest_location = NULL, ingested_by = NULL WHERE id = %s",
            (str(scene_id),),
        )


def stuck_ingesting(conn, older_than):
    """Ids of scenes in INGESTING untouched for longer than ``older_than``, locked for the
    caller's transaction (rows another transaction holds are skipped)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id FROM scenes WHERE ingest_status = 'INGESTING' "
            "AND modified_at < now() - %s FOR UPDATE SKIP LOCKED",
            (older_than,),
        )
        return [row[0] for row in cur.fetchall()]


def set_ingested(conn, scene_id, location, lineage=None):
    """Marks a scene INGESTED with its tiles' URL template and the versions of the steps
    that made them (``Step@vN,...``)."""
    set_ingest_status(conn, scene_id, IngestStatus.INGESTED)
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE scenes SET ingest_location = %s, ingested_by = %s WHERE id = %s",
            (location, lineage, str(scene_id)),
        )


def release(conn, scene_id, reason):
    """A scene still INGESTING when the run working on it ended goes back to TOBEINGESTED
    with ``reason``; returns True when it was INGESTING. A missing scene is left alone."""
    try:
        status = get_scene(conn, scene_id, lock=True)["ingest_status"]
    except NotFound:
        return False
    if status != IngestStatus.INGESTING:
        return False
    set_ingest_status(conn, scene_id, IngestStatus.TOBEINGESTED, reason)
    return True
