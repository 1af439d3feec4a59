"""Raster Foundry's status enums and the transitions allowed between their values."""

import enum

from rf_pipelines.errors import IllegalTransition


class UploadStatus(enum.StrEnum):
    CREATED = "CREATED"
    UPLOADING = "UPLOADING"
    UPLOADED = "UPLOADED"
    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"
    ABORTED = "ABORTED"


class IngestStatus(enum.StrEnum):
    NOTINGESTED = "NOTINGESTED"
    TOBEINGESTED = "TOBEINGESTED"
    INGESTING = "INGESTING"
    INGESTED = "INGESTED"
    FAILED = "FAILED"


class JobStatus(enum.StrEnum):
    UPLOADING = "UPLOADING"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    PARTIALFAILURE = "PARTIALFAILURE"
    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"


_U = UploadStatus
_I = IngestStatus

# Moving back to UPLOADED/TOBEINGESTED is how a stuck or failed row is queued again; back to
# UPLOADING is a file being replaced (no run may start until the replacement is done);
# COMPLETE back to PROCESSING is a run whose steps have new versions redoing the work.
UPLOAD_TRANSITIONS = {
    _U.CREATED: {_U.UPLOADING, _U.UPLOADED, _U.ABORTED},
    _U.UPLOADING: {_U.UPLOADED, _U.FAILED, _U.ABORTED},
    _U.UPLOADED: {_U.QUEUED, _U.PROCESSING, _U.UPLOADING, _U.ABORTED},
    _U.QUEUED: {_U.PROCESSING, _U.UPLOADING, _U.FAILED, _U.ABORTED},
    _U.PROCESSING: {_U.COMPLETE, _U.FAILED, _U.UPLOADED},
    _U.FAILED: {_U.UPLOADED, _U.UPLOADING, _U.QUEUED, _U.PROCESSING},
    _U.COMPLETE: {_U.PROCESSING},
    _U.ABORTED: set(),
}

INGEST_TRANSITIONS = {
    _I.NOTINGESTED: {_I.TOBEINGESTED},
    _I.TOBEINGESTED: {_I.INGESTING, _I.NOTINGESTED},
    _I.INGESTING: {_I.INGESTED, _I.FAILED, _I.TOBEINGESTED},
    _I.FAILED: {_I.TOBEINGESTED, _I.INGESTING},
    _I.INGESTED: {_I.TOBEINGESTED},
}


def check_transition(transitions, what, old, new):
    """Raises unless ``old -> new`` is allowed; staying in the same status is always allowed.

    Args:
        transitions: UPLOAD_TRANSITIONS or INGEST_TRANSITIONS.
        what: the object, for the message (for example "upload 1b2c...").
        old: current status.
        new: requested status.

    Raises:
        IllegalTransition: the message names the object and both statuses.
    """
    status = type(next(iter(transitions)))
    old, new = status(old), status(new)
    if old != new and new not in transitions[old]:
        allowed = ", ".join(sorted(transitions[old])) or "none"
        raise IllegalTransition(f"{what}: cannot go from {old} to {new} (allowed: {allowed})")
