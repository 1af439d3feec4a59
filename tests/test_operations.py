"""Operating the pipelines: the on-demand wrapper, one notification per run (SMTP, SNS, SES),
task logs and progress in luigid, the task history, and reaping stuck rows."""

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid

import luigi
import pytest
from click.testing import CliRunner

from rf_pipelines import clients, config, uploading
from rf_pipelines.catalog import db, history, uploads
from rf_pipelines.cli import cli
from rf_pipelines.tasks.runner import scheduler_url
from tests import rasters
from tests.stac import free_port

GOOD = str(rasters.GEOTIFF / "RGB.byte.tif")


def _bad_upload(tmp_path, count=2):
    for n in range(count):
        (tmp_path / f"broken{n}.tif").write_text("not a raster")
    return uploading.create_upload(
        [GOOD] + [str(tmp_path / f"broken{n}.tif") for n in range(count)], "ops"
    )


def _run(*args):
    result = CliRunner().invoke(cli, ["run", *args])
    return result.exit_code, result.output


def test_run_wrapper_through_luigid_and_one_notification_per_run(
    data_root, database_url, tmp_path, smtp
):
    upload_id = _bad_upload(tmp_path, count=3)
    code, out = _run("ProcessUpload", "--upload-id", str(upload_id))
    assert code == 3, out
    assert "broken0.tif" in out and "not a raster GDAL can read" in out
    [message] = smtp.messages  # three failed files: one message
    assert "3 task(s) failed" in message
    for n in range(3):
        assert f"filename=broken{n}.tif" in message
    assert "log: " in message and "visualiser: " + scheduler_url() in message
    log_url = next(line.split("log: ", 1)[1] for line in message.splitlines() if "log: " in line)
    from rf_pipelines.targets import files

    assert b"not a raster GDAL can read" in files.read_bytes(log_url.strip())

    # The batch ran through luigid with its log as tracking URL and its files' progress.
    query = urllib.parse.quote(json.dumps({"status": "FAILED"}))
    with urllib.request.urlopen(f"{scheduler_url()}/api/task_list?data={query}") as resp:
        failed = json.loads(resp.read())["response"]
    batch = next(
        t
        for t in failed.values()
        if t["name"] == "UploadBatch" and t["params"]["upload_id"] == str(upload_id)
    )
    assert batch["tracking_url"].endswith(".log") and "/logs/" in batch["tracking_url"]
    assert batch["status_message"] == f"upload {upload_id} batch 1/1: 1 of 4 files done, 3 failed"
    assert batch["progress_percentage"] == 100


def test_run_refuses_unknown_tasks_and_bad_parameters(data_root):
    code, out = _run("DeleteEverything")
    assert code == 2 and "unknown task 'DeleteEverything'" in out and "ProcessUpload" in out
    code, out = _run("ProcessUpload")
    assert code == 2 and "ProcessUpload" in out
    code, out = _run("ImportDay", "--source", "sentinel2", "--day", "yesterday", "--run-day", "x")
    assert code == 2


def test_two_runs_of_the_same_upload_at_once_do_the_work_once(data_root, database_url):
    upload_id = uploading.create_upload([GOOD], "ops")
    env = {"RF_DATA_ROOT": data_root, "RF_DATABASE_URL": database_url}
    import os

    argv = [sys.executable, "-m", "rf_pipelines.cli", "run", "ProcessUpload", "--upload-id"]
    procs = [
        subprocess.Popen(
            argv + [str(upload_id)],
            env={**os.environ, **env},
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    codes = sorted(p.returncode for p in procs)
    print("exit codes of the two runs:", codes)
    assert codes in ([0, 0], [0, 7]), outputs
    with db.connect(database_url) as conn:
        assert uploads.upload_summary(conn, upload_id)["status"] == "COMPLETE"
    # luigid's history: the batch of this file started once.
    history_url = config.settings().task_history_url
    runs = history.recent_runs(history_url, limit=200)
    batches = [
        r
        for r in runs
        if r["task"] == "UploadBatch" and r["params"].get("upload_id") == str(upload_id)
    ]
    assert len(batches) == 1 and batches[0]["state"] == "DONE"


def test_status_lists_recent_runs_from_the_task_history(data_root, database_url):
    upload_id = uploading.create_upload([GOOD], "ops")
    assert _run("ProcessUpload", "--upload-id", str(upload_id))[0] == 0
    result = CliRunner().invoke(cli, ["status", "--json", "--limit", "200"])
    assert result.exit_code == 0, result.output
    runs = [json.loads(line) for line in result.output.splitlines()]
    mine = [r for r in runs if r["params"].get("upload_id") == str(upload_id)]
    assert {r["task"] for r in mine} == {"ProcessUpload", "UploadBatch"}
    assert all(r["state"] == "DONE" and r["seconds"] >= 0 for r in mine)
    text = CliRunner().invoke(cli, ["status", "--limit", "5"]).output
    assert text.splitlines()[-1].startswith("5 task runs")


def test_sns_and_ses_channels_through_moto(luigi_config, local_services):
    from rf_pipelines import notify

    sns, sqs, ses = (clients.aws_client(s) for s in ("sns", "sqs", "ses"))
    topic = sns.create_topic(Name=f"rf-ops-{uuid.uuid4().hex[:6]}")["TopicArn"]
    queue = sqs.create_queue(QueueName=f"rf-ops-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn["Attributes"]["QueueArn"])
    ses.verify_email_identity(EmailAddress="rf-pipelines@example.org")
    before = sum(p["DeliveryAttempts"] for p in ses.get_send_statistics()["SendDataPoints"])
    luigi_config("RfNotify", "channels", "sns,ses")
    luigi_config("RfNotify", "sns_topic_arn", topic)
    luigi_config("RfNotify", "email_to", "oncall@example.org")
    luigi_config("RfNotify", "email_from", "rf-pipelines@example.org")
    failures = [
        {"family": "ImportBatch", "params": {"batch": str(n)}, "error": "boom", "log": "x"}
        for n in range(500)
    ]
    assert notify.send(*notify.failure_report("run-1", failures)) == ["sns", "ses"]
    [delivered] = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=2)["Messages"]
    body = json.loads(delivered["Body"])
    assert body["Subject"] == "[rf-pipelines] run-1: 500 task(s) failed"
    assert "ImportBatch(batch=499)" in body["Message"]
    after = sum(p["DeliveryAttempts"] for p in ses.get_send_statistics()["SendDataPoints"])
    assert after == before + 1


def test_bad_notification_config_is_named(luigi_config):
    from rf_pipelines import notify
    from rf_pipelines.errors import ConfigError

    luigi_config("RfNotify", "channels", "pager")
    with pytest.raises(ConfigError, match="unknown 'pager'"):
        notify.channels()
    luigi_config("RfNotify", "channels", "sns")
    with pytest.raises(ConfigError, match="sns_topic_arn is empty"):
        notify.channels()


def test_reap_resets_stuck_rows_that_luigid_does_not_run(data_root, database_url):
    stuck = uploading.create_upload([GOOD], "ops")
    fresh = uploading.create_upload([GOOD], "ops")
    with db.transaction(database_url) as conn:
        for upload_id in (stuck, fresh):
            uploads.file_started(conn, upload_id, "RGB.byte.tif")
        with conn.cursor() as cur:
            cur.execute(
                "UPDATE uploads SET modified_at = now() - interval '3 hours' WHERE id = %s",
                (str(stuck),),
            )
    result = CliRunner().invoke(cli, ["reap", "--older-than", "2h"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"uploads": [str(stuck)], "scenes": []}
    with db.connect(database_url) as conn:
        assert uploads.upload_summary(conn, stuck)["status"] == "UPLOADED"
        assert "reaped" in uploads.upload_summary(conn, stuck)["status_reason"]
        assert uploads.upload_summary(conn, stuck)["files"][0]["status"] == "QUEUED"
        assert uploads.upload_summary(conn, fresh)["status"] == "PROCESSING"
    # The reaped upload processes to COMPLETE.
    assert _run("ProcessUpload", "--upload-id", str(stuck))[0] == 0
    bad = CliRunner().invoke(cli, ["reap", "--older-than", "soon"])
    assert bad.exit_code == 2 and "positive duration" in bad.output


def test_scheduler_command_runs_luigid_with_history(tmp_path, database_url, local_services):
    port = free_port()
    history_db = f"rf_history_{uuid.uuid4().hex[:6]}"
    history_url = database_url.rsplit("/", 1)[0] + "/" + history_db
    import os

    env = {**os.environ, "RF_HOME": str(tmp_path), "RF_HISTORY_DATABASE_URL": history_url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rf_pipelines.cli", "scheduler", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(url + "/api/task_list?data=%7B%7D", timeout=1)
                break
            except OSError:
                time.sleep(0.2)

        class Hello(luigi.Task):
            done = False

            def complete(self):
                return self.done

            def run(self):
                type(self).done = True

        assert luigi.build([Hello()], scheduler_host="127.0.0.1", scheduler_port=port)
        with urllib.request.urlopen(url + "/history", timeout=5) as resp:
            assert resp.status == 200 and b"Hello" in resp.read()
        assert (tmp_path / "scheduler" / "luigid.cfg").read_text().count("record_task_history")
        runs = history.recent_runs(history_url)
        assert runs[0]["task"] == "Hello" and runs[0]["state"] == "DONE"
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(30)
        admin = database_url.rsplit("/", 1)[0] + "/postgres"
        import psycopg2

        conn = psycopg2.connect(admin)
        conn.autocommit = True
        conn.cursor().execute(f'DROP DATABASE IF EXISTS "{history_db}" WITH (FORCE)')
        conn.close()
    # A password in the history URL is refused: it would be written to luigid's config.
    result = CliRunner().invoke(
        cli, ["scheduler"], env={"RF_HISTORY_DATABASE_URL": "postgresql://u:secret@h/db"}
    )
    assert result.exit_code == 2 and "PGPASSWORD" in result.output


class _BrokenCompleteness(luigi.Task):
    """A task whose complete() raises: it fails before run(), during scheduling."""

    def complete(self):
        raise RuntimeError("the completeness check is broken")


def test_a_task_failing_outside_run_is_reported_too(data_root, smtp):
    from rf_pipelines.errors import BuildFailed
    from rf_pipelines.tasks.runner import build

    with pytest.raises(BuildFailed) as err:
        build([_BrokenCompleteness()], local_scheduler=True)
    assert err.value.exit_code in (3, 4)
    [message] = smtp.messages
    assert "_BrokenCompleteness" in message and "failed outside run()" in message


def test_a_run_that_shares_its_work_with_another_worker_never_exits_5(tmp_path, local_services):
    """Two runs of one graph at once: luigid gives each run one of the two slow steps, so
    the run that finishes its step first has nothing left that it may run (luigi: "not
    granted run permission", exit 5 before). Neither may exit 5: 0 when the work is done
    (whoever did it), 7 while the other run still does it."""
    argv = [sys.executable, "-m", "tests.shared_work", str(tmp_path)]
    procs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    codes = [p.returncode for p in procs]

    ran = sorted(p.name for p in tmp_path.glob("*.ran-by-*"))
    assert [name.split(".")[0] for name in ran] == ["a", "b", "root"], ran  # each once
    pids = {name.split(".")[0]: name.rsplit("-", 1)[1] for name in ran}
    assert pids["a"] != pids["b"], (ran, outputs)  # the work really was shared
    assert (tmp_path / "root.done").exists()
    assert 5 not in codes and sorted(codes) in ([0, 0], [0, 7]), (codes, outputs)


def test_a_run_whose_share_is_done_waits_20_s_for_a_live_worker_then_exits_7(
    tmp_path, local_services
):
    """Step a runs 40 s in one run; the other run's step b is done in 2 s: that run waits
    for a, whose worker is alive, PATIENCE_S (20 s) from the end of its share, then exits 7
    saying so; the first run finishes the work and exits 0."""
    from rf_pipelines.tasks.runner import PATIENCE_S

    argv = [sys.executable, "-m", "tests.shared_work", str(tmp_path)]
    env = {**os.environ, "RF_TEST_HOLDING_STEP": "a", "RF_TEST_HOLD_SECONDS": "40"}
    logs = [tmp_path / f"run-{n}.log" for n in range(2)]
    procs = [
        subprocess.Popen(argv, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
        for log in logs
    ]
    ended, deadline = {}, time.monotonic() + 120
    while len(ended) < 2 and time.monotonic() < deadline:
        for proc in procs:
            if str(proc.pid) not in ended and proc.poll() is not None:
                ended[str(proc.pid)] = time.time()
        time.sleep(0.1)
    outputs = [log.read_text() for log in logs]
    assert len(ended) == 2, outputs
    ran = sorted(p.name for p in tmp_path.glob("*.ran-by-*"))
    pids = {name.split(".")[0]: name.rsplit("-", 1)[1] for name in ran}
    assert pids["a"] != pids["b"], (ran, outputs)
    waiting = [str(p.pid) for p in procs].index(pids["b"])
    assert [p.returncode for p in procs][waiting] == 7, outputs
    assert [p.returncode for p in procs][1 - waiting] == 0, outputs
    assert "already running on another worker" in outputs[waiting]
    # Its share ended when b was done; it then waited for a, whose worker pinged on.
    waited = ended[pids["b"]] - (tmp_path / "b.done").stat().st_mtime
    assert PATIENCE_S <= waited < PATIENCE_S + 10, (waited, outputs[waiting])


def test_a_run_whose_shared_work_failed_in_the_other_run_exits_3_not_7(tmp_path, local_services):
    """When the other run's step fails, nothing runs any more: "already running" (7) would
    send an operator to wait for nothing."""
    argv = [sys.executable, "-m", "tests.shared_work", str(tmp_path)]
    env = {**os.environ, "RF_TEST_FAILING_STEP": "b"}
    procs = [
        subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    codes = [p.returncode for p in procs]
    assert codes == [3, 3], (codes, outputs)
    ran = sorted(p.name for p in tmp_path.glob("*.ran-by-*"))
    pids = {name.split(".")[0]: name.rsplit("-", 1)[1] for name in ran}
    assert sorted(pids) == ["a", "b"] and pids["a"] != pids["b"], ran  # b ran once
    # The run that ran a reports the other run's failure.
    other = outputs[[str(p.pid) for p in procs].index(pids["a"])]
    assert "failed in another run sharing this work (see luigid): SlowStep_" in other


def test_a_failed_run_names_work_another_worker_holds_past_its_wait(tmp_path, local_services):
    """Step a holds on in the other run longer than a run waits (20 s): the run that failed b
    ends all the same, exits 3, and says that a is still another worker's."""
    argv = [sys.executable, "-m", "tests.shared_work", str(tmp_path)]
    env = {**os.environ, "RF_TEST_FAILING_STEP": "b", "RF_TEST_HOLD_SECONDS": "35"}
    procs = [
        subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    ran = sorted(p.name for p in tmp_path.glob("*.ran-by-*"))
    pids = {name.split(".")[0]: name.rsplit("-", 1)[1] for name in ran}
    index = [str(p.pid) for p in procs].index(pids["b"])
    assert procs[index].returncode == 3, outputs[index]
    assert "already running on another worker" in outputs[index]
    assert "SlowStep_" in outputs[index].split("already running on another worker")[1]
