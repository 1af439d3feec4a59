"""A Postgres marker target: a database step is done when its marker row exists."""

import contextlib

import luigi

from rf_pipelines import config
from rf_pipelines.catalog import db, markers, uploads


class MarkerTarget(luigi.Target):
    """Marks a database step as done, in the same transaction as the step's data.

    Use ``with target.transaction() as conn:`` in ``run()``: write the step's rows with
    ``conn``; the marker is added last and both commit together or not at all.
    """

    def __init__(self, marker_id, task_family, task_version, params, database_url=None):
        self.marker_id = marker_id
        self.task_family = task_family
        self.task_version = task_version
        self.params = params
        self.database_url = database_url or config.settings().database_url

    def exists(self):
        with db.connect(self.database_url) as conn:
            return markers.exists(conn, self.marker_id)

    @contextlib.contextmanager
    def transaction(self):
        """Yields a connection in a transaction that also writes this marker on success."""
        with db.transaction(self.database_url) as conn:
            yield conn
            self.write(conn)

    def write(self, conn):
        """Writes the marker in the caller's transaction (committed with its work)."""
        markers.write(conn, self.marker_id, self.task_family, self.task_version, self.params)

    def __repr__(self):
        return f"MarkerTarget({self.marker_id!r})"


class UploadStatusTarget(luigi.Target):
    """Exists when the upload has reached ``status`` (the whole upload's completion), and,
    with ``lineage``, was processed by those versions of the steps (``processed_by``)."""

    def __init__(self, upload_id, status, lineage=None, database_url=None):
        self.upload_id = upload_id
        self.status = str(status)
        self.lineage = lineage
        self.database_url = database_url or config.settings().database_url

    def exists(self):
        with db.connect(self.database_url) as conn:
            upload = uploads.get_upload(conn, self.upload_id)
        if upload["upload_status"] != self.status:
            return False
        return self.lineage is None or upload["processed_by"] == self.lineage
