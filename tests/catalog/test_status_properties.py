"""Property: whatever happened before (steps started, failed and succeeded in any order,
reaps, releases, replacements finished or killed half-way, requeues, reruns with bumped
versions), a rerun as the README tells operators to run it converges: the good file SUCCESS,
the bad one FAILURE with its step, the upload FAILED naming it, the scene INGESTED.

The events are the catalog calls the tasks and commands make, on a real PostgreSQL; an event
the status machine refuses (IllegalTransition, AlreadyRunning) must write nothing."""

import uuid

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rf_pipelines import ids
from rf_pipelines.catalog import datasources, db, scenes, uploads
from rf_pipelines.catalog.statuses import IngestStatus, UploadStatus
from rf_pipelines.errors import AlreadyRunning, IllegalTransition

STEPS = (
    "ValidateUploadFile",
    "ConvertToCog",
    "MakeFootprints",
    "WriteStacItem",
    "RegisterUploadScene",
)
GOOD, BAD = "a.tif", "b.tif"  # b.tif's pixels are corrupt: ConvertToCog fails on it
FILES = (GOOD, BAD)
BAD_STEP = "ConvertToCog"

file_ = st.sampled_from(FILES)
step = st.sampled_from(STEPS)
EVENTS = st.one_of(
    st.tuples(st.just("start"), file_, step),
    st.tuples(st.just("fail"), file_, step),
    st.tuples(st.just("succeed"), file_),
    st.tuples(st.sampled_from(["settle", "reap", "release", "bump"])),
    st.tuples(st.sampled_from(["replace", "replace_killed"]), file_),
    st.tuples(
        st.sampled_from(["queue_ingest", "start_ingest", "fail_ingest", "ingested", "reap_ingest"])
    ),
    st.tuples(st.just("release_ingest")),
)


def _may_clear(starting):
    """As UploadFileTask.may_clear: the failed step itself or one upstream of it."""
    return lambda failed: STEPS.index(starting) <= STEPS.index(failed)


def _apply(conn, upload_id, scene_id, event, markers):
    """Applies one event; ``markers`` holds the files whose RegisterUploadScene marker
    exists (written with the file's SUCCESS; luigi runs no step of such a file), and
    ("running", file) while a live worker runs a step of the file."""
    kind, *args = event
    if kind in ("start", "fail", "succeed") and args[0] in markers:
        return  # the file's chain is complete: no step of it runs
    if kind == "start":
        if uploads.file_started(conn, upload_id, args[0], _may_clear(args[1])):
            markers.add(("running", args[0]))  # a live worker works on it from now on
    elif kind == "fail":
        uploads.file_failed(conn, upload_id, args[0], f"{args[1]}: RuntimeError: boom", args[1])
        markers.discard(("running", args[0]))
    elif kind == "succeed":  # the last step of a chain a worker started, whatever came since
        if ("running", args[0]) in markers:
            uploads.file_succeeded(conn, upload_id, args[0], scene_id, {})
            markers.discard(("running", args[0]))
            markers.add(args[0])
    elif kind == "settle":
        uploads.settle(conn, upload_id)
    elif kind == "reap":  # what `reap` does to an upload no task runs for
        if uploads.get_upload(conn, upload_id, lock=True)["upload_status"] == "PROCESSING":
            uploads.requeue(conn, upload_id, "reaped")
    elif kind == "release":
        uploads.release(conn, upload_id, "released")
    elif kind == "bump":  # a new version of the last step: its markers no longer count
        markers.clear()
        for name in FILES:
            uploads.file_started(conn, upload_id, name, _may_clear(STEPS[-1]))
    elif kind in ("replace", "replace_killed"):
        _replace_first_half(conn, upload_id, args[0], markers)
        markers.discard(args[0])  # replace deletes the old file's markers
        if kind == "replace":
            _replace_second_half(conn, upload_id, args[0])
    elif kind == "queue_ingest":
        scenes.queue_for_ingest(conn, scene_id)
    elif kind == "start_ingest":
        scenes.start_ingest(conn, scene_id)
    elif kind == "fail_ingest":
        scenes.set_ingest_status(conn, scene_id, IngestStatus.FAILED, "RenderTiles: boom")
    elif kind == "ingested":
        scenes.set_ingested(conn, scene_id, "s3://tiles/{z}/{x}/{y}.png", "Test@v1")
    elif kind == "reap_ingest":
        if scenes.get_scene(conn, scene_id, lock=True)["ingest_status"] == "INGESTING":
            scenes.set_ingest_status(conn, scene_id, IngestStatus.TOBEINGESTED, "reaped")
    elif kind == "release_ingest":
        scenes.release(conn, scene_id, "released")


def _replace_first_half(conn, upload_id, name, markers=()):
    """uploading.replace_file's first transaction: refused while the upload is processed,
    or a worker runs a step of it (luigid says so)."""
    status = uploads.get_upload(conn, upload_id, lock=True)["upload_status"]
    if status == UploadStatus.PROCESSING or any(isinstance(m, tuple) for m in markers):
        raise AlreadyRunning(f"upload {upload_id} is being processed")
    uploads.set_upload_status(conn, upload_id, UploadStatus.UPLOADING, f"replacing {name}")
    scenes.forget_ingest(conn, ids.scene_id_for_upload(upload_id, name))


def _replace_second_half(conn, upload_id, name):
    uploads.add_file(conn, upload_id, name, f"/uploads/{name}", 1)
    uploads.set_upload_status(conn, upload_id, UploadStatus.UPLOADED)


def _rerun(database_url, upload_id, scene_id, markers):
    """What the README tells an operator to do, and the run itself: finish a replacement
    that did not finish, then process the upload (the steps of files without a marker, then
    ProcessUpload's settle), then ingest the good file's scene."""
    with db.transaction(database_url) as conn:
        # An ingest left INGESTING ends or is reaped first (replace is refused meanwhile).
        if scenes.get_scene(conn, scene_id, lock=True)["ingest_status"] == "INGESTING":
            scenes.set_ingest_status(conn, scene_id, IngestStatus.TOBEINGESTED, "reaped")
    with db.transaction(database_url) as conn:
        upload = uploads.get_upload(conn, upload_id, lock=True)
        if upload["upload_status"] == UploadStatus.UPLOADING:
            name = upload["status_reason"].removeprefix("replacing ")
            _replace_first_half(conn, upload_id, name)
            _replace_second_half(conn, upload_id, name)
    # The workers that were running finish their chains first (succeeding, say).
    for running in [m for m in markers if isinstance(m, tuple)]:
        with db.transaction(database_url) as conn:
            uploads.file_succeeded(conn, upload_id, running[1], scene_id, {})
        markers.add(running[1])
    for name in [f for f in FILES if f not in markers]:
        for step_name in STEPS:
            with db.transaction(database_url) as conn:
                if not uploads.file_started(conn, upload_id, name, _may_clear(step_name)):
                    break
                if name == BAD and step_name == BAD_STEP:
                    uploads.file_failed(conn, upload_id, name, f"{BAD_STEP}: corrupt", BAD_STEP)
                    break
        else:
            with db.transaction(database_url) as conn:
                uploads.file_succeeded(conn, upload_id, name, scene_id, {})
    with db.transaction(database_url) as conn:
        uploads.settle(conn, upload_id)  # ProcessUpload.run, when every chain is complete
    with db.transaction(database_url) as conn:
        scenes.queue_for_ingest(conn, scene_id)
        scenes.start_ingest(conn, scene_id)
        scenes.set_ingested(conn, scene_id, "s3://tiles/{z}/{x}/{y}.png", "Test@v1")


def _new_upload(database_url):
    upload_id = uuid.uuid4()
    scene_id = ids.scene_id_for_upload(upload_id, GOOD)
    with db.transaction(database_url) as conn:
        uploads.create_upload(conn, upload_id, "props", "LOCAL", [], status=UploadStatus.UPLOADED)
        for name in FILES:
            uploads.add_file(conn, upload_id, name, f"/uploads/{name}", 1)
        source = datasources.upsert_datasource(conn, "props", "props")
        scenes.upsert_scene(
            conn,
            {
                "id": scene_id,
                "name": f"{upload_id}/{GOOD}",
                "owner": "props",
                "datasource_id": source["id"],
                "written_by": "Test@v1",
            },
        )
    return str(upload_id), str(scene_id)


def _state(conn, upload_id, scene_id):
    upload = uploads.get_upload(conn, upload_id)
    return (
        upload["upload_status"],
        upload["status_reason"],
        [(f["status"], f["error"], f["failed_step"]) for f in uploads.list_files(conn, upload_id)],
        scenes.get_scene(conn, scene_id)["ingest_status"],
    )


@pytest.fixture(scope="module")
def catalog(admin_url, migrated_template):
    from tests.conftest import create_database, drop_database

    name = f"rf_props_{uuid.uuid4().hex[:10]}"
    yield create_database(admin_url, name, template=migrated_template)
    drop_database(admin_url, name)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(events=st.lists(EVENTS, max_size=25))
# Found by review: a release between a live worker's start and end of a file's last step.
@example(events=[("start", GOOD, "WriteStacItem"), ("start", BAD, "ConvertToCog"), ("release",)])
def test_any_history_then_a_rerun_converges(catalog, events):
    upload_id, scene_id = _new_upload(catalog)
    markers = set()
    for event in events:
        with db.connect(catalog) as conn:
            before = _state(conn, upload_id, scene_id)
        try:
            after = set(markers)  # markers commit with the event's transaction, or not at all
            with db.transaction(catalog) as conn:
                _apply(conn, upload_id, scene_id, event, after)
            markers = after
        except (IllegalTransition, AlreadyRunning):
            with db.connect(catalog) as conn:
                assert _state(conn, upload_id, scene_id) == before, f"{event} wrote half"

    _rerun(catalog, upload_id, scene_id, markers)

    with db.connect(catalog) as conn:
        upload = uploads.get_upload(conn, upload_id)
        files = {f["filename"]: f for f in uploads.list_files(conn, upload_id)}
        scene = scenes.get_scene(conn, scene_id)
    assert files[GOOD]["status"] == "SUCCESS" and files[GOOD]["error"] is None
    if BAD in markers:  # it succeeded before its pixels went bad, and was not replaced since
        assert upload["upload_status"] == "COMPLETE", (events, upload)
        assert files[BAD]["status"] == "SUCCESS"
    else:
        assert upload["upload_status"] == "FAILED", (events, upload)
        assert f"{BAD}: {BAD_STEP}: corrupt" in upload["status_reason"]
        assert (files[BAD]["status"], files[BAD]["failed_step"]) == ("FAILURE", BAD_STEP)
    assert scene["ingest_status"] == "INGESTED", events
