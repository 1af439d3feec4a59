"""`rf-pipelines listen`: new-scene notifications on an SQS queue (moto's server), with the
queue's visibility timeout as real SQS keeps it."""

import datetime
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from click.testing import CliRunner

from rf_pipelines import clients, config
from rf_pipelines.catalog import db
from rf_pipelines.cli import cli
from tests import mirror, stac

TILE_DAY = datetime.date(2017, 7, 29)


VISIBILITY_S = 2


@pytest.fixture()
def queues(local_services, s3_bucket, database_url, tmp_path, monkeypatch):
    """A queue (visibility timeout 2 s) with a dead-letter queue (maxReceiveCount 5), a
    Landsat mirror, a catalog."""
    monkeypatch.setenv("RF_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("RF_DATABASE_URL", database_url)
    root = f"s3://{s3_bucket}/listen-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("RF_ASSET_MIRRORS", f"s3://usgs-landsat={root}")
    config.settings.cache_clear()
    sqs = clients.aws_client("sqs")
    name = f"rf-scenes-{uuid.uuid4().hex[:8]}"
    dlq = sqs.create_queue(QueueName=f"{name}-dead")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]
    policy = {"deadLetterTargetArn": dlq_arn["QueueArn"], "maxReceiveCount": "5"}
    url = sqs.create_queue(
        QueueName=name,
        Attributes={"RedrivePolicy": json.dumps(policy), "VisibilityTimeout": str(VISIBILITY_S)},
    )["QueueUrl"]
    return {"sqs": sqs, "url": url, "dlq": dlq, "root": root, "db": database_url}


def _sns(message):
    """The SNS envelope SQS receives from a topic subscription (raw delivery off)."""
    return json.dumps({"Type": "Notification", "MessageId": str(uuid.uuid4()), "Message": message})


def _listen(url, *options):
    result = CliRunner().invoke(cli, ["listen", url, "--once", *options])
    lines = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    return result.exit_code, lines, result.output


def _drain(sqs, url):
    found = []
    while messages := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    ).get("Messages"):
        for message in messages:
            found.append(message)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return found


def _scene_names(database_url):
    with db.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT name FROM scenes WHERE owner = 'rf_pipelines' ORDER BY name")
        return [row[0] for row in cur.fetchall()]


def test_notifications_are_imported_and_bad_ones_rejected_to_the_dead_letter_queue(queues):
    sqs, url = queues["sqs"], queues["url"]
    landsat = stac.real_landsat_item("2020-10-31")
    stac.put_mtl(queues["root"], landsat)
    tile_root = f"{queues['root']}-s2"
    [tile] = mirror.put_day(tile_root, TILE_DAY, ["DP"])
    bucket, prefix = tile_root[len("s3://") :].split("/", 1)
    s3_event = {
        "Records": [
            {
                "s3": {
                    "bucket": {"name": bucket},
                    "object": {"key": f"{prefix}/{tile}/tileInfo.json"},
                }
            }
        ]
    }
    no_mtl = stac.real_landsat_item("2015-07-10")  # its MTL is not in the mirror
    bodies = {
        "landsat": _sns(json.dumps(landsat)),
        "sentinel2": json.dumps(s3_event),
        "stac": _sns(json.dumps(stac.s2_item())),
        "garbage": "this is not json",
        "odd": json.dumps({"Records": [1]}),  # JSON of an odd shape: rejected, not a crash
        "no_mtl": _sns(json.dumps(no_mtl)),
    }
    ids = {k: sqs.send_message(QueueUrl=url, MessageBody=b)["MessageId"] for k, b in bodies.items()}

    code, lines, out = _listen(url)
    assert code == 0, out
    outcome = {line["message"]: line for line in lines if "message" in line}
    assert {k: outcome[i]["outcome"] for k, i in ids.items()} == {
        "landsat": "stored",
        "sentinel2": "stored",
        "stac": "stored",
        "garbage": "rejected",
        "odd": "rejected",
        "no_mtl": "rejected",
    }
    assert "malformed message" in outcome[ids["garbage"]]["reason"]
    assert "MTL file" in outcome[ids["no_mtl"]]["reason"]
    assert _scene_names(queues["db"]) == sorted(
        [
            "LC08_L2SP_001062_20201031_02",
            mirror.scene_name(TILE_DAY, "DP"),
            "S2A_13TDE_20231008_0_L2A",
        ]
    )
    assert _drain(sqs, url) == []  # every message handled is deleted
    dead = _drain(sqs, queues["dlq"])
    assert sorted(m["Body"] for m in dead) == sorted(
        [bodies["garbage"], bodies["odd"], bodies["no_mtl"]]
    )
    assert all(m["MessageAttributes"]["rejected_because"]["StringValue"] for m in dead)

    # A redelivered notification (at-least-once delivery) updates the same row.
    sqs.send_message(QueueUrl=url, MessageBody=bodies["landsat"])
    assert _listen(url)[0] == 0
    assert len(_scene_names(queues["db"])) == 3


def _s3_event(url):
    bucket, key = url[len("s3://") :].split("/", 1)
    return json.dumps({"Records": [{"s3": {"bucket": {"name": bucket}, "object": {"key": key}}}]})


def _scene_rows(database_url):
    with db.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT s.name, d.name, s.scene_metadata->>'import_source', "
            "s.scene_metadata->>'product_id' FROM scenes s "
            "JOIN datasources d ON d.id = s.datasource_id "
            "WHERE s.owner = 'rf_pipelines' ORDER BY s.name"
        )
        return cur.fetchall()


def test_l1c_and_l2a_tiles_of_one_path_stay_two_scenes_of_two_sources(queues, monkeypatch):
    # The real L1C and L2A tileInfo.json of 19UDP on 2017-07-29, in buckets laid out as
    # sentinel-s2-l1c (the configured root) and sentinel-s2-l2a: one tile path for both.
    from tests.conftest import TESTDATA

    sqs, url = queues["sqs"], queues["url"]
    roots = {level: f"{queues['root']}-{level}" for level in ("l1c", "l2a")}
    monkeypatch.setenv("RF_SENTINEL2_ROOT", roots["l1c"])
    config.settings.cache_clear()
    path = "tiles/19/U/DP/2017/7/29/0"
    for level, root in roots.items():
        real = (
            TESTDATA / "sentinel2" / f"sentinel-s2-{level}_tiles_19_U_DP_2017_7_29_0_tileInfo.json"
        )
        mirror.put_json(root, f"{path}/tileInfo.json", real.read_text())
        sqs.send_message(QueueUrl=url, MessageBody=_s3_event(f"{root}/{path}/tileInfo.json"))
    code, lines, out = _listen(url)
    assert [line["outcome"] for line in lines if "message" in line] == ["stored"] * 2, out
    assert _scene_rows(queues["db"]) == [
        (
            "S2A_MSIL1C_20170729T153601_T19UDP",
            "Sentinel-2 L1C",
            "sentinel2",
            "S2A_MSIL1C_20170729T153601_N0205_R111_T19UDP_20170729T153557",
        ),
        (
            "S2A_MSIL2A_20170729T153601_T19UDP",
            "Sentinel-2 L2A",
            f"sentinel2@{roots['l2a']}",
            "S2A_MSIL2A_20170729T153601_N0001_R111_T19UDP_20200401T051009",
        ),
    ]


@pytest.mark.parametrize("first", ["real-time", "tier-1"])
def test_a_late_older_product_does_not_replace_the_newer_one(queues, first):
    # SQS does not keep order: the Tier 1 reprocessing of a Real-Time product may arrive
    # first. Either way the scene ends with the Tier 1 product.
    landsat = stac.real_landsat_item("2020-10-31")
    text = (stac.LANDSAT / "LC08_L2SP_001062_20201031_20201106_02_T2_MTL.json").read_text()
    items = {
        "real-time": stac.republished(landsat, text, "20201101", "RT"),
        "tier-1": stac.republished(landsat, text, "20201115", "T1"),
    }
    for item, mtl_text in items.values():
        stac.put_mtl(queues["root"], item, text=mtl_text)
    second = "tier-1" if first == "real-time" else "real-time"
    for which in (first, second):  # one listener run each: a fixed order of arrival
        queues["sqs"].send_message(
            QueueUrl=queues["url"], MessageBody=_sns(json.dumps(items[which][0]))
        )
        code, lines, out = _listen(queues["url"])
        assert [line["outcome"] for line in lines if "message" in line] == ["stored"], out
    [(name, _, _, product)] = _scene_rows(queues["db"])
    assert name == "LC08_L2SP_001062_20201031_02"
    assert product == items["tier-1"][0]["id"] == "LC08_L2SP_001062_20201031_20201115_02_T1"


def test_a_message_is_kept_while_the_catalog_is_down(queues, monkeypatch):
    sqs, url = queues["sqs"], queues["url"]
    sqs.send_message(QueueUrl=url, MessageBody=_sns(json.dumps(stac.s2_item())))
    from rf_pipelines import listening
    from rf_pipelines.errors import ServiceUnavailable

    def down(records):
        raise ServiceUnavailable("catalog down")

    monkeypatch.setattr(listening, "_store", down)
    code, lines, out = _listen(url)
    assert code == 0, out
    assert lines[0]["outcome"] == "retry" and "catalog down" in lines[0]["reason"]
    assert lines[-1] == {"done": {"stored": 0, "rejected": 0, "retry": 1}}  # --once: one try
    time.sleep(VISIBILITY_S + 0.5)  # back after the visibility timeout (first receive)
    assert _listen(url)[1][0]["outcome"] == "retry"  # still down: now back in twice that
    nothing = [{"done": {"stored": 0, "rejected": 0, "retry": 0}}]
    time.sleep(VISIBILITY_S + 0.5)
    assert _listen(url)[1] == nothing  # the backoff doubled: still invisible
    monkeypatch.undo()
    time.sleep(VISIBILITY_S)
    assert _listen(url)[1][0]["outcome"] == "stored"  # the kept message, once the catalog is up


def test_a_bad_queue_url_is_refused(queues):
    result = CliRunner().invoke(cli, ["listen", "not-a-url", "--once"])
    assert result.exit_code == 2 and "give the queue's URL" in result.output
    missing = queues["url"].rsplit("/", 1)[0] + "/no-such-queue"
    result = CliRunner().invoke(cli, ["listen", missing, "--once"])
    assert result.exit_code == 2 and "does not exist" in result.output
    result = CliRunner().invoke(cli, ["listen", queues["url"], "--once", "--batch", "11"])
    assert result.exit_code == 2 and "--batch 11 must be between 1 and 10" in result.output


def test_upload_messages_are_processed_through_luigid(queues, tmp_path):
    from rf_pipelines import uploading
    from rf_pipelines.catalog import uploads
    from tests import rasters

    sqs, url = queues["sqs"], queues["url"]
    good = uploading.create_upload([str(rasters.GEOTIFF / "RGB.byte.tif")], "listener")
    (tmp_path / "bad.tif").write_text("not a raster")
    bad = uploading.create_upload([str(tmp_path / "bad.tif")], "listener")
    ids = {
        "good": sqs.send_message(
            QueueUrl=url, MessageBody=_sns(json.dumps({"upload_id": str(good)}))
        ),
        "bad": sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"upload_id": str(bad)})),
        "no_uuid": sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"upload_id": "42"})),
        # Well formed, but no such upload: retrying cannot make it exist.
        "missing": sqs.send_message(
            QueueUrl=url, MessageBody=json.dumps({"upload_id": str(uuid.uuid4())})
        ),
    }
    code, lines, out = _listen(url)
    assert code == 0, out
    outcome = {line["message"]: line for line in lines if "message" in line}
    got = {k: outcome[m["MessageId"]]["outcome"] for k, m in ids.items()}
    assert got == {
        "good": "stored",
        "bad": "rejected",
        "no_uuid": "rejected",
        "missing": "rejected",
    }
    assert "not a UUID" in outcome[ids["no_uuid"]["MessageId"]]["reason"]
    assert "does not exist" in outcome[ids["missing"]["MessageId"]]["reason"]
    with db.connect(queues["db"]) as conn:
        assert uploads.upload_summary(conn, good)["status"] == "COMPLETE"
        assert uploads.upload_summary(conn, bad)["status"] == "FAILED"
    assert _drain(sqs, url) == []
    assert len(_drain(sqs, queues["dlq"])) == 3


def test_an_upload_that_crashed_stays_on_the_queue(queues, monkeypatch):
    # A crash is not the message's fault: it comes back (the redrive policy bounds it).
    from rf_pipelines import uploading
    from rf_pipelines.tasks.uploads import DescribeBands
    from tests import rasters

    sqs, url = queues["sqs"], queues["url"]
    upload_id = uploading.create_upload([str(rasters.GEOTIFF / "byte.tif")], "listener")
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"upload_id": str(upload_id)}))

    def crash(self):
        raise RuntimeError("segfault-ish")

    with monkeypatch.context() as patch:
        patch.setattr(DescribeBands, "work", crash)
        code, lines, out = _listen(url)
    assert [line["outcome"] for line in lines if "message" in line] == ["retry"], out
    assert _drain(sqs, queues["dlq"]) == []
    time.sleep(VISIBILITY_S + 0.5)
    code, lines, out = _listen(url)  # the same message, the crash gone
    assert [line["outcome"] for line in lines if "message" in line] == ["stored"], out


def test_an_upload_put_back_unfinished_stays_on_the_queue_despite_a_bad_file(
    queues, tmp_path, monkeypatch
):
    # Seen in the fault campaign: luigid was killed under the run; the corrupt file had
    # failed (bad input) but the good one was put back unfinished: not the message's end.
    from rf_pipelines import listening, uploading
    from rf_pipelines.errors import BuildFailed
    from rf_pipelines.tasks import runner
    from tests import rasters

    sqs, url = queues["sqs"], queues["url"]
    (tmp_path / "bad.tif").write_text("not a raster")
    upload_id = uploading.create_upload(
        [str(rasters.GEOTIFF / "byte.tif"), str(tmp_path / "bad.tif")], "listener"
    )
    failure = {"task_id": "t", "family": "ValidateUploadFile", "kind": "permanent"}

    def interrupted(tasks, **kwargs):  # the upload is left UPLOADED, as a release leaves it
        raise BuildFailed("", exit_code=3, lines=["bad.tif failed"], failures=[failure])

    with monkeypatch.context() as patch:
        patch.setattr(runner, "build", interrupted)
        assert listening._run_job(listening.UPLOAD, str(upload_id))[0] == "retry"
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"upload_id": str(upload_id)}))
    code, lines, out = _listen(url)  # a whole run: the upload ends FAILED, then rejected
    assert [line["outcome"] for line in lines if "message" in line] == ["rejected"], out


def test_an_ingest_message_runs_the_scene_ingest(queues):
    from rf_pipelines import uploading
    from rf_pipelines.catalog import scenes, uploads
    from rf_pipelines.tasks import ProcessUpload
    from rf_pipelines.tasks.runner import build
    from tests import rasters

    sqs, url = queues["sqs"], queues["url"]
    upload_id = uploading.create_upload([str(rasters.GEOTIFF / "RGB.byte.tif")], "listener")
    build([ProcessUpload(upload_id=str(upload_id))])
    with db.connect(queues["db"]) as conn:
        scene_id = str(uploads.upload_summary(conn, upload_id)["files"][0]["scene_id"])
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"ingest_scene_id": scene_id}))
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"ingest_scene_id": str(uuid.uuid4())}))
    code, lines, out = _listen(url)
    assert code == 0, out
    outcomes = sorted((line["outcome"], line["ingest"]) for line in lines if "message" in line)
    assert outcomes[1] == ("stored", scene_id)
    assert outcomes[0][0] == "rejected"  # no such scene
    with db.connect(queues["db"]) as conn:
        assert scenes.get_scene(conn, scene_id)["ingest_status"] == "INGESTED"
    assert _drain(sqs, url) == []


def _slow_step(monkeypatch, family_cls, seconds):
    """Makes a step of the upload workflow take ``seconds`` longer (a long job)."""
    original = family_cls.work

    def slow(self):
        time.sleep(seconds)
        return original(self)

    monkeypatch.setattr(family_cls, "work", slow)


def test_a_job_longer_than_the_visibility_timeout_is_processed_once(queues, monkeypatch):
    # Without its visibility kept alive, the message came back after 2 s, mid-job: another
    # consumer (here a probe that receives all along) got it.
    import threading

    from rf_pipelines import uploading
    from rf_pipelines.catalog import uploads
    from rf_pipelines.tasks.uploads import DescribeBands
    from tests import rasters

    sqs, url = queues["sqs"], queues["url"]
    upload_id = uploading.create_upload([str(rasters.GEOTIFF / "byte.tif")], "listener")
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"upload_id": str(upload_id)}))
    _slow_step(monkeypatch, DescribeBands, 3 * VISIBILITY_S)
    stolen, listening_done = [], threading.Event()

    def probe():  # another consumer; VisibilityTimeout 0: it takes nothing away
        time.sleep(0.5)  # the listener receives first
        while not listening_done.is_set():
            stolen.extend(
                sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1, VisibilityTimeout=0).get(
                    "Messages", []
                )
            )

    prober = threading.Thread(target=probe)
    prober.start()
    started = time.monotonic()
    try:
        code, lines, out = _listen(url)
    finally:
        listening_done.set()
        prober.join()
    assert time.monotonic() - started > 3 * VISIBILITY_S  # the job did outlast the timeout
    assert stolen == []
    assert code == 0, out
    assert [line["outcome"] for line in lines if "message" in line] == ["stored"], out
    with db.connect(queues["db"]) as conn:
        assert uploads.upload_summary(conn, upload_id)["status"] == "COMPLETE"
    time.sleep(VISIBILITY_S + 0.5)
    assert _drain(sqs, url) == []  # deleted
    assert _drain(sqs, queues["dlq"]) == []


@pytest.fixture()
def proxied_store(queues, local_services, monkeypatch):
    """The object store behind a proxy (bench/proxy.py) that can answer 503 or refuse."""
    from bench.proxy import Proxy

    endpoint = local_services["AWS_ENDPOINT_URL_S3"]
    host, port = endpoint.rsplit("/", 1)[-1].rsplit(":", 1)
    with Proxy(host, port) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
        config.settings.cache_clear()
        yield proxy
    config.settings.cache_clear()


@pytest.mark.parametrize("fault", ["503", "refuse", "403"])
def test_a_store_that_fails_leaves_the_message_for_a_retry(queues, proxied_store, fault):
    # 503 and refused connections are transient; 403 is this worker's setting (credentials,
    # requester pays): none is the message's fault, none goes to the dead-letter queue.
    sqs, url = queues["sqs"], queues["url"]
    landsat = stac.real_landsat_item("2020-10-31")
    stac.put_mtl(queues["root"], landsat)
    message = sqs.send_message(QueueUrl=url, MessageBody=_sns(json.dumps(landsat)))
    proxied_store.mode = fault
    code, lines, out = _listen(url)
    assert code == 0, out
    [line] = [line for line in lines if "message" in line]
    assert (line["message"], line["outcome"]) == (message["MessageId"], "retry"), out
    assert "cannot be read" in line["reason"]
    if fault == "403":
        assert "the store refuses this worker" in line["reason"]
    if fault != "refuse":
        assert proxied_store.requests > 0  # the store was asked, and answered 503
    assert _drain(sqs, queues["dlq"]) == []
    assert _scene_names(queues["db"]) == []

    proxied_store.mode = "forward"
    time.sleep(VISIBILITY_S + 0.5)
    assert [line["outcome"] for line in _listen(url)[1] if "message" in line] == ["stored"]
    assert _scene_names(queues["db"]) == ["LC08_L2SP_001062_20201031_02"]


def _failing_call(monkeypatch, operation):
    """The listener's SQS client, with ``operation`` (SendMessage, DeleteMessage) failing as
    a throttled service does: botocore's own before-call hook, on a real client of moto's
    server (a new one: the shared, cached client is left alone)."""
    from botocore.exceptions import ClientError

    from rf_pipelines import listening

    failed = []

    def fail(**kwargs):
        failed.append(operation)
        raise ClientError({"Error": {"Code": "ThrottlingException"}}, operation)

    client = clients._session().client("sqs", config=clients._BOTO_CONFIG)
    client.meta.events.register(f"before-call.sqs.{operation}", fail)
    real = clients.aws_client
    monkeypatch.setattr(
        listening.clients,
        "aws_client",
        lambda service, *args: client if service == "sqs" else real(service, *args),
    )
    return failed


@pytest.mark.parametrize("operation", ["SendMessage", "DeleteMessage"])
def test_a_failed_dead_letter_send_or_delete_is_logged_and_the_message_comes_back(
    queues, monkeypatch, operation
):
    sqs, url = queues["sqs"], queues["url"]
    sqs.send_message(QueueUrl=url, MessageBody="this is not json")
    with monkeypatch.context() as patch:
        failed = _failing_call(patch, operation)
        code, lines, out = _listen(url)
    assert failed == [operation]
    assert code == 0, out  # the listener went on
    [line] = [line for line in lines if "message" in line]
    assert line["outcome"] == "rejected" and "not settled" in line["reason"]
    time.sleep(VISIBILITY_S + 0.5)
    code, lines, out = _listen(url)  # it came back, and is settled this time
    assert [line["outcome"] for line in lines if "message" in line] == ["rejected"], out
    assert _drain(sqs, url) == []
    # A failed delete had sent it to the dead-letter queue already: twice there, never lost.
    assert len(_drain(sqs, queues["dlq"])) == (2 if operation == "DeleteMessage" else 1)


def _listener(queue_url, fired, *options, step="DescribeBands", seconds=3, wait_seconds=1):
    """``rf-pipelines listen`` in a process of its own, the step ``step`` taking ``seconds``
    more each time it runs (``tests/fault_cli.py``); each start is a line in ``fired``."""
    env = dict(os.environ, RF_FAULT_FIRED=str(fired))
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fault_cli",
            step,
            f"sleep={seconds}",
            "--",
            "listen",
            queue_url,
            "--wait-seconds",
            str(wait_seconds),
            *options,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(predicate, timeout=60, what="the condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _statuses(database_url, upload_ids):
    from rf_pipelines.catalog import uploads

    with db.connect(database_url) as conn:
        return [uploads.upload_summary(conn, u)["status"] for u in upload_ids]


def _queued_uploads(queues, count):
    """``count`` uploads of one small GeoTIFF, each announced by a message on the queue."""
    from rf_pipelines import uploading
    from tests import rasters

    found = [
        uploading.create_upload([str(rasters.GEOTIFF / "byte.tif")], "listener")
        for _ in range(count)
    ]
    for upload_id in found:
        queues["sqs"].send_message(
            QueueUrl=queues["url"], MessageBody=json.dumps({"upload_id": str(upload_id)})
        )
    return found


def _outcomes(output):
    return [json.loads(line) for line in output.splitlines() if line.startswith('{"message"')]


def test_sigterm_finishes_the_current_message_and_gives_the_others_back(queues, tmp_path):
    sqs, url = queues["sqs"], queues["url"]
    uploads_ = _queued_uploads(queues, 3)
    fired = tmp_path / "fired"
    listener = _listener(url, fired, seconds=2 * VISIBILITY_S)
    _wait_for(fired.exists, what="the first job to start")
    listener.send_signal(signal.SIGTERM)
    out, err = listener.communicate(timeout=120)
    assert listener.returncode == 0, err
    assert "Traceback" not in err
    done = _outcomes(out)
    assert [line["outcome"] for line in done] == ["stored"], out
    assert json.loads(out.splitlines()[-1]) == {"done": {"stored": 1, "rejected": 0, "retry": 0}}
    statuses = _statuses(queues["db"], uploads_)
    assert sorted(statuses) == ["COMPLETE", "UPLOADED", "UPLOADED"], statuses
    # The two messages not started are back on the queue at once, not after a timeout:
    # received by the listener once, and now a second time.
    back = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["ApproximateReceiveCount"]
    ).get("Messages", [])
    assert sorted(json.loads(m["Body"])["upload_id"] for m in back) == sorted(
        str(u) for u, s in zip(uploads_, statuses, strict=True) if s == "UPLOADED"
    )
    assert [m["Attributes"]["ApproximateReceiveCount"] for m in back] == ["2", "2"]


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_while_waiting_for_messages_ends_with_the_long_poll(queues, tmp_path, number):
    listener = _listener(queues["url"], tmp_path / "fired", wait_seconds=3)
    time.sleep(4)  # long enough to be waiting on the empty queue
    started = time.monotonic()
    listener.send_signal(number)
    out, err = listener.communicate(timeout=30)
    assert listener.returncode == 0, err
    assert "Traceback" not in err
    assert time.monotonic() - started < 3 + 2  # at most the rest of the 3 s long poll
    assert json.loads(out.splitlines()[-1]) == {"done": {"stored": 0, "rejected": 0, "retry": 0}}


def test_two_listeners_on_one_queue_process_each_message_once(queues, tmp_path):
    # Each job outlasts the visibility timeout: without it kept alive, the other listener
    # received the message mid-job and processed it again.
    sqs, url = queues["sqs"], queues["url"]
    uploads_ = _queued_uploads(queues, 4)
    fired = tmp_path / "fired"
    listeners = [_listener(url, fired, "--batch", "1", seconds=1.5 * VISIBILITY_S) for _ in "ab"]
    _wait_for(
        lambda: _statuses(queues["db"], uploads_) == ["COMPLETE"] * 4,
        timeout=180,
        what="the four uploads",
    )
    time.sleep(VISIBILITY_S + 1)  # time for a wrongly redelivered message to be taken again
    for listener in listeners:
        listener.send_signal(signal.SIGTERM)
    outputs = [listener.communicate(timeout=120) for listener in listeners]
    assert [listener.returncode for listener in listeners] == [0, 0], outputs
    handled = [[line["upload"] for line in _outcomes(out)] for out, _ in outputs]
    assert sorted(handled[0] + handled[1]) == sorted(str(u) for u in uploads_), outputs
    assert all(handled), f"one listener did all the work: {handled}"
    assert len(fired.read_text().splitlines()) == 4  # each upload's slow step ran once
    assert _drain(sqs, url) == [] and _drain(sqs, queues["dlq"]) == []


def _nap():
    time.sleep(60)


def test_a_process_forked_while_listening_still_ends_on_sigterm():
    # luigi reads a Spark step's tracking URL in a forked process and terminate()s it at the
    # end. Forked with the listener's SIGTERM handler, it ignored that and lived on, and the
    # listener (or pytest) waited for it at exit for good.
    import multiprocessing

    from rf_pipelines import listening

    with listening._Stop() as stop:
        child = multiprocessing.get_context("fork").Process(target=_nap)
        child.start()
        time.sleep(0.5)
        child.terminate()
        child.join(10)
        assert child.exitcode == -signal.SIGTERM
        assert not stop.requested  # the listener itself was not asked to stop
