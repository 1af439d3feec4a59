"""Projects: named collections of scenes that users view together."""

import uuid

from rf_pipelines import ids
from rf_pipelines.catalog.rows import fetch_one, upsert
from rf_pipelines.errors import NotFound


def resolve_project(conn, project, owner):
    """A project by id (which must exist) or by name (created for ``owner`` if missing).

    Returns:
        the project's id.

    Raises:
        NotFound: a UUID that names no project.
    """
    try:
        project_id = uuid.UUID(project)
    except ValueError:
        row = upsert(
            conn,
            "projects",
            {"id": ids.stable_id("project", owner, project), "name": project, "owner": owner},
        )
        return row["id"]
    if fetch_one(conn, "projects", project_id) is None:
        raise NotFound(f"project {project} does not exist")
    return project_id
