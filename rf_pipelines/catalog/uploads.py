"""Uploads: user-supplied files waiting to become scenes, and their status."""

from rf_pipelines import ids
from rf_pipelines.catalog.db import dict_cursor
from rf_pipelines.catalog.rows import adapt, fetch_one, jsonb, upsert
from rf_pipelines.catalog.statuses import (
    UPLOAD_TRANSITIONS,
    JobStatus,
    UploadStatus,
    check_transition,
)
from rf_pipelines.errors import IllegalTransition, NotFound


def parse_upload_id(value):
    """Validates a user-supplied upload id (raises InvalidInput when it is not a UUID)."""
    return ids.parse_uuid(value, "upload id")


def create_upload(
    conn,
    upload_id,
    owner,
    upload_type,
    files,
    status=UploadStatus.CREATED,
    datasource_id=None,
    project_id=None,
    notes=(),
):
    """Inserts or updates an upload row; ``notes`` are shown with it (sidecars left out).

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
        "notes": jsonb(list(notes)),
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


PROCESSABLE = frozenset(
    {
        UploadStatus.UPLOADED,
        UploadStatus.QUEUED,
        UploadStatus.PROCESSING,
        UploadStatus.FAILED,
        UploadStatus.COMPLETE,
    }
)


def check_processable(upload):
    """Raises unless the upload's files are all in (any status from UPLOADED on).

    Raises:
        IllegalTransition: CREATED, UPLOADING or ABORTED.
    """
    if upload["upload_status"] not in PROCESSABLE:
        why = f" ({upload['status_reason']})" if upload.get("status_reason") else ""
        raise IllegalTransition(
            f"upload {upload['id']} is {upload['upload_status']}{why}: only an upload whose "
            "files are all uploaded (UPLOADED, QUEUED, FAILED) can be processed; a replacement "
            "that did not finish is finished by running the same `upload replace` again"
        )


def add_file(conn, upload_id, filename, source_uri, size_bytes, sidecars=()):
    """Records (or re-queues, after a replacement) one file of an upload, with the names of
    the sidecars copied beside it."""
    upsert(
        conn,
        "upload_files",
        {
            "upload_id": upload_id,
            "filename": filename,
            "source_uri": source_uri,
            "size_bytes": size_bytes,
            "status": str(JobStatus.QUEUED),
            "error": None,
            "failed_step": None,
            "scene_id": None,
            "outputs": {},
            "sidecars": jsonb(list(sidecars)),
        },
        key=("upload_id", "filename"),
    )


def get_file(conn, upload_id, filename):
    """One file's row.

    Raises:
        NotFound: the upload has no such file.
    """
    with dict_cursor(conn) as cur:
        cur.execute(
            "SELECT * FROM upload_files WHERE upload_id = %s AND filename = %s",
            (str(parse_upload_id(upload_id)), filename),
        )
        row = cur.fetchone()
    if row is None:
        raise NotFound(f"upload {upload_id} has no file {filename!r}")
    return row


def list_files(conn, upload_id):
    """The upload's files as dicts, by name."""
    with dict_cursor(conn) as cur:
        cur.execute(
            "SELECT * FROM upload_files WHERE upload_id = %s ORDER BY filename",
            (str(parse_upload_id(upload_id)),),
        )
        return cur.fetchall()


def count_files(conn, upload_id):
    """How many files the upload has."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM upload_files WHERE upload_id = %s",
            (str(parse_upload_id(upload_id)),),
        )
        return cur.fetchone()[0]


def file_names(conn, upload_id, offset=0, limit=None):
    """The names of the upload's files, by name, from ``offset``, at most ``limit``."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT filename FROM upload_files WHERE upload_id = %s ORDER BY filename "
            "OFFSET %s LIMIT %s",
            (str(parse_upload_id(upload_id)), offset, limit),
        )
        return [row[0] for row in cur.fetchall()]


def _set_file(conn, upload_id, filename, status, **columns):
    assignments = "".join(f", {name} = %s" for name in columns)
    with conn.cursor() as cur:
        cur.execute(
            f"UPDATE upload_files SET status = %s, modified_at = now(){assignments} "
            "WHERE upload_id = %s AND filename = %s",
            (str(status), *(adapt(v) for v in columns.values()), str(upload_id), filename),
        )
        if cur.rowcount != 1:
            raise NotFound(f"upload {upload_id} has no file {filename!r}")


def _failure_of(conn, upload_id, filename):
    """(status, failed_step) of one file, locked for the caller's transaction.

    Raises:
        NotFound: the upload has no such file.
    """
    with conn.cursor() as cur:
        cur.execute(
            "SELECT status, failed_step FROM upload_files WHERE upload_id = %s "
            "AND filename = %s FOR UPDATE",
            (str(upload_id), filename),
        )
        row = cur.fetchone()
    if row is None:
        raise NotFound(f"upload {upload_id} has no file {filename!r}")
    return row


def file_started(conn, upload_id, filename, may_clear=None):
    """Marks a file PROCESSING and its upload PROCESSING (from UPLOADED, QUEUED or FAILED).

    A file that already failed stays FAILURE with its step and reason unless
    ``may_clear(failed_step)`` says the starting step is that step run again, or one
    upstream of it: a sibling or downstream step, in this run or in another run sharing the
    work through luigid, never wipes a recorded failure.

    Args:
        may_clear: ``failed_step -> bool``; None lets any step clear a failure.

    Returns:
        bool: False when the file's failure stands (nothing changed).

    Raises:
        IllegalTransition: the upload is not ready (CREATED, UPLOADING: a file is being
            replaced) or is final.
    """
    upload = get_upload(conn, upload_id, lock=True)  # one status change at a time
    status, failed_step = _failure_of(conn, upload_id, filename)
    if status == JobStatus.FAILURE and failed_step and may_clear and not may_clear(failed_step):
        if upload["upload_status"] == UploadStatus.UPLOADING:
            # Being replaced: nothing may write outputs of the old file now.
            check_transition(
                UPLOAD_TRANSITIONS,
                f"upload {upload_id}",
                UploadStatus.UPLOADING,
                UploadStatus.PROCESSING,
            )
        return False
    set_upload_status(conn, upload_id, UploadStatus.PROCESSING)
    _set_file(conn, upload_id, filename, JobStatus.PROCESSING, error=None, failed_step=None)
    return True


def file_failed(conn, upload_id, filename, error, step=None):
    """Marks a file FAILURE with its error and the step that failed, then settles the
    upload's status. The first failure stands: a later failure of another step of a file
    that already failed does not replace the recorded step and reason.

    The upload's row is locked first, as every status change of an upload and its files
    does: the file's row first would deadlock with a sibling step starting."""
    get_upload(conn, upload_id, lock=True)
    status, failed_step = _failure_of(conn, upload_id, filename)
    if status == JobStatus.FAILURE and failed_step and failed_step != step:
        return settle(conn, upload_id)
    _set_file(conn, upload_id, filename, JobStatus.FAILURE, error=error, failed_step=step)
    return settle(conn, upload_id)


def file_succeeded(conn, upload_id, filename, scene_id, outputs):
    """Marks a file SUCCESS with its scene and output URLs, then settles the upload (the
    upload's row locked first, as everywhere)."""
    get_upload(conn, upload_id, lock=True)
    _set_file(
        conn, upload_id, filename, JobStatus.SUCCESS, error=None, scene_id=scene_id, outputs=outputs
    )
    return settle(conn, upload_id)


MAX_REASONS = 20  # failed files named in an upload's status reason; `upload show` has all

_SETTLED_FROM = frozenset(
    {UploadStatus.PROCESSING, UploadStatus.UPLOADED, UploadStatus.QUEUED, UploadStatus.FAILED}
)


def settle(conn, upload_id):
    """Sets the upload COMPLETE when every file succeeded, FAILED (listing each failed file
    and why) when every file is finished and some failed; otherwise leaves it as it is.

    Returns:
        the upload's status after the call.
    """
    upload = get_upload(conn, upload_id, lock=True)
    if upload["upload_status"] not in _SETTLED_FROM:
        return upload["upload_status"]
    # Counted, not listed: an upload of thousands of files is settled once per file.
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*), count(*) FILTER (WHERE status NOT IN (%s, %s)), "
            "count(*) FILTER (WHERE status = %s) FROM upload_files WHERE upload_id = %s",
            (
                str(JobStatus.SUCCESS),
                str(JobStatus.FAILURE),
                str(JobStatus.FAILURE),
                str(upload_id),
            ),
        )
        total, unfinished, failed = cur.fetchone()
    if not total or unfinished:
        return upload["upload_status"]
    if upload["upload_status"] != UploadStatus.PROCESSING:
        # Put back (reaped, released) while a live worker finished its last file: every
        # file is finished all the same, so the upload is settled, through PROCESSING.
        set_upload_status(conn, upload_id, UploadStatus.PROCESSING)
    if not failed:
        set_upload_status(conn, upload_id, UploadStatus.COMPLETE)
        return UploadStatus.COMPLETE
    failures = [f for f in list_files(conn, upload_id) if f["status"] == JobStatus.FAILURE]
    reason = f"{failed} of {total} files failed: " + "; ".join(
        f"{f['filename']}: {f['error']}" for f in failures[:MAX_REASONS]
    )
    if failed > MAX_REASONS:
        reason += f"; and {failed - MAX_REASONS} more (upload show lists each)"
    set_upload_status(conn, upload_id, UploadStatus.FAILED, reason=reason)
    return UploadStatus.FAILED


def set_processed_by(conn, upload_id, lineage):
    """Records the versions of the steps that made the upload COMPLETE (``Step@vN,...``)."""
    with conn.cursor() as cur:
        cur.execute("UPDATE uploads SET processed_by = %s WHERE id = %s", (lineage, str(upload_id)))


def upload_summary(conn, upload_id):
    """The upload's status and, per file, its status, error, scene and outputs."""
    upload = get_upload(conn, upload_id)
    return {
        "id": str(upload["id"]),
        "status": upload["upload_status"],
        "status_reason": upload["status_reason"],
        "processed_by": upload["processed_by"],
        "owner": upload["owner"],
        "project_id": upload["project_id"] and str(upload["project_id"]),
        "created_at": upload["created_at"].isoformat(),
        "modified_at": upload["modified_at"].isoformat(),
        "notes": upload["notes"],
        "files": [
            {
                "name": f["filename"],
                "status": f["status"],
                "error": f["error"],
                "scene_id": f["scene_id"] and str(f["scene_id"]),
                "size_bytes": f["size_bytes"],
                "sidecars": f["sidecars"],
                "outputs": f["outputs"],
            }
            for f in list_files(conn, upload_id)
        ],
    }


def stuck_processing(conn, older_than):
    """Ids of uploads in PROCESSING untouched for longer than ``older_than``, locked for the
    caller's transaction (rows another transaction holds are skipped)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id FROM uploads WHERE upload_status = 'PROCESSING' "
            "AND modified_at < now() - %s FOR UPDATE SKIP LOCKED",
            (older_than,),
        )
        return [row[0] for row in cur.fetchall()]


def requeue(conn, upload_id, reason):
    """Puts an upload stuck in PROCESSING back to UPLOADED, its unfinished files to QUEUED."""
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE upload_files SET status = %s, modified_at = now() "
            "WHERE upload_id = %s AND status = %s",
            (str(JobStatus.QUEUED), str(upload_id), str(JobStatus.PROCESSING)),
        )
    set_upload_status(conn, upload_id, UploadStatus.UPLOADED, reason=reason)


def release(conn, upload_id, reason):
    """``requeue`` for an upload still PROCESSING when the run working on it ended; returns
    True when it was PROCESSING. A missing upload is left alone."""
    try:
        upload = get_upload(conn, upload_id, lock=True)
    except NotFound:
        return False
    if upload["upload_status"] != UploadStatus.PROCESSING:
        return False
    requeue(conn, upload_id, reason)
    return True
