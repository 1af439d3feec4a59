"""Scene records built from metadata: the columns the catalog stores for a scene."""

from pathlib import PurePosixPath


def scene_from_description(scene_id, datasource_id, description, owner, written_by):
    """A scene record for a described raster (see ``describe.describe``).

    Returns:
        dict of scene columns for ``catalog.scenes.upsert_scene``.
    """
    footprints = description["tile_footprints"]
    return {
        "id": scene_id,
        "name": PurePosixPath(description["name"]).name,
        "owner": owner,
        "datasource_id": datasource_id,
        "tile_footprint_4326": footprints["4326"],
        "tile_footprint_3857": footprints["3857"],
        "scene_metadata": {
            key: description[key] for key in ("width", "height", "crs", "resolution", "bands")
        },
        "written_by": written_by,
    }
