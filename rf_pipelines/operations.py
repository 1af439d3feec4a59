"""Operating the pipelines: reaping rows left in PROCESSING or INGESTING by workers that died."""

import json
import logging
import re
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import timedelta

from rf_pipelines import retry
from rf_pipelines.catalog import db, imports, scenes, uploads
from rf_pipelines.catalog.statuses import IngestStatus
from rf_pipelines.errors import InvalidInput, ServiceUnavailable

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(value, option="--older-than"):
    """``90s``, ``30m``, ``2h``, ``7d`` -> timedelta.

    Raises:
        InvalidInput: another form, or zero.
    """
    match = _DURATION.match(value.strip())
    if not match or int(match.group(1)) == 0:
        raise InvalidInput(f"{option} {value!r}: write a positive duration such as 30m, 2h or 1d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def running_tasks(scheduler_url):
    """The parameters of every task luigid reports RUNNING.

    Raises:
        ServiceUnavailable: luigid does not answer (then nothing can be reaped safely).
    """
    query = urllib.parse.quote(json.dumps({"status": "RUNNING"}))
    try:
        with urllib.request.urlopen(f"{scheduler_url}/api/task_list?data={query}", timeout=10) as r:
            body = json.loads(r.read())
    except OSError as err:
        raise ServiceUnavailable(
            f"luigid at {scheduler_url} does not answer, so what it runs is unknown: {err}"
        ) from err
    return [task.get("params", {}) for task in body.get("response", {}).values()]


def reap(database_url, scheduler_url, older_than):
    """Resets uploads stuck in PROCESSING and scenes stuck in INGESTING for longer than
    ``older_than`` whose task luigid no longer runs: the upload back to UPLOADED (its
    unfinished files back to QUEUED), the scene back to TOBEINGESTED, with the reason.

    Returns:
        dict: "uploads" and "scenes", the ids reset.
    """
    running = running_tasks(scheduler_url)
    busy_uploads = {p.get("upload_id") for p in running if p.get("upload_id")}
    busy_scenes = {p.get("scene_id") for p in running if p.get("scene_id")}
    reason = f"reaped: stuck for more than {older_than} with no task running in luigid"
    reset = {"uploads": [], "scenes": []}
    with db.transaction(database_url) as conn:
        for upload_id in uploads.stuck_processing(conn, older_than):
            if str(upload_id) not in busy_uploads:
                uploads.requeue(conn, upload_id, reason)
                reset["uploads"].append(str(upload_id))
        for scene_id in scenes.stuck_ingesting(conn, older_than):
            if str(scene_id) not in busy_scenes:
                scenes.set_ingest_status(conn, scene_id, IngestStatus.TOBEINGESTED, reason)
                reset["scenes"].append(str(scene_id))
    return reset


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    """A catalog row a task moves to an in-flight status: ``kind`` is "upload" (id),
    "scene" (id) or "day" ("SOURCE YYYY-MM-DD")."""

    kind: str
    key: str


RELEASED = "the run ended before this was finished; run the same command again"


def release(database_url, scheduler_url, claims):
    """Puts back the claimed rows that are still in flight although luigid runs no task for
    them: an upload PROCESSING to UPLOADED (its unfinished files to QUEUED), a scene
    INGESTING to TOBEINGESTED, an import day RUNNING to INCOMPLETE. Called when a run ends
    unfinished, so that no row claims work nobody does. Retried while PostgreSQL or luigid
    are briefly away; when luigid cannot say what runs, nothing is released.

    Returns:
        list of the claims released.
    """
    if not claims:
        return []
    return retry.call(_release, database_url, scheduler_url, set(claims), attempts=6)


def _release(database_url, scheduler_url, claims):
    running = running_tasks(scheduler_url)
    busy = {str(v) for params in running for v in params.values()}
    busy_days = {f"{p.get('source')} {p.get('day')}" for p in running}
    released = []
    with db.transaction(database_url) as conn:
        for claim in sorted(claims, key=lambda c: (c.kind, c.key)):
            if claim.kind == "upload" and claim.key not in busy:
                if uploads.release(conn, claim.key, RELEASED):
                    released.append(claim)
            elif claim.kind == "scene" and claim.key not in busy:
                if scenes.release(conn, claim.key, RELEASED):
                    released.append(claim)
            elif claim.kind == "day" and claim.key not in busy_days:
                source, day = claim.key.split(" ")
                if imports.release_day(conn, source, day):
                    released.append(claim)
    for claim in released:
        log.warning("%s %s: %s", claim.kind, claim.key, RELEASED)
    return released
