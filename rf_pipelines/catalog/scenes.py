"""Scenes: one acquisition of one datasource, with footprints, metadata and ingest status."""

from rf_pipelines.catalog.rows import fetch_one, upsert
from rf_pipelines.catalog.statuses import INGEST_TRANSITIONS, check_transition
from rf_pipelines.errors import NotFound

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
