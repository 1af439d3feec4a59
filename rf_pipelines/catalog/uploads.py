"""Uploads: user-supplied files waiting to become scenes, and their status."""

import uuid

from rf_pipelines.catalog.rows import fetch_one, jsonb, upsert
from rf_pipelines.catalog.statuses import UPLOAD_TRANSITIONS, UploadStatus, check_transition
from rf_pipelines.errors import InvalidInput, NotFound


def parse_upload_id(value):
    """Validates a user-supplied upload id.

    Raises:
        InvalidInput: not a UUID.
    """
    try:
        return uuid.UUID(str(value))
    except ValueError as err:
        raise InvalidInput(f"upload id {value!r} is not a UUID") from err


def create_upload(
    conn,
    upload_id,
    owner,
    upload_type,
    files,
    status=UploadStatus.CREATED,
    datasource_id=None,
    project_id=None,
):
    """Inserts or updates an upload row.

    Returns:
        dict of the row.
    """
    row = {
        "id": upload_id,
        "owner": owner,
        "upload_type": upload_type,
        "upload_status": str(status),
        "files": jsonb(list(files)),
        "datasource_id": datasource_id,
        "project_id": project_id,
    }
    return upsert(conn, "uploads", row)


def get_upload(conn, upload_id, lock=False):
    """The upload row.

    Raises:
        NotFound: no upload with this id.
    """
    row = fetch_one(conn, "uploads", parse_upload_id(upload_id), lock=lock)
    if row is None:
        raise NotFound(f"upload {upload_id} does not exist")
    return row


def set_upload_status(conn, upload_id, status, reason=None):
    """Moves an upload to ``status`` if the transition is allowed.

    Raises:
        NotFound: no such upload.
        IllegalTransition: the move is not allowed; nothing is written.
    """
    current = get_upload(conn, upload_id, lock=True)
    check_transition(UPLOAD_TRANSITIONS, f"upload {upload_id}", current["upload_status"], status)
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE uploads SET upload_status = %s, status_reason = %s, modified_at = now() "
            "WHERE id = %s",
            (str(status), reason, str(upload_id)),
        )
