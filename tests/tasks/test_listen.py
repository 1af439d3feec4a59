"""`rf-pipelines listen`: new-scene notifications on an SQS queue (moto's server)."""

import datetime
import json
import uuid

import pytest
from click.testing import CliRunner

from rf_pipelines import clients, config
from rf_pipelines.catalog import db
from rf_pipelines.cli import cli
from tests import mirror, stac

TILE_DAY = datetime.date(2017, 7, 29)


@pytest.fixture()
def queues(local_services, s3_bucket, database_url, tmp_path, monkeypatch):
    """A queue with a dead-letter queue (maxReceiveCount 5), a Landsat mirror, a catalog."""
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
        Attributes={"RedrivePolicy": json.dumps(policy), "VisibilityTimeout": "0"},
    )["QueueUrl"]
    return {"sqs": sqs, "url": url, "dlq": dlq, "root": root, "db": database_url}


def _sns(message):
    """The SNS envelope SQS receives from a topic subscription (raw delivery off)."""
    return json.dumps({"Type": "Notification", "MessageId": str(uuid.uuid4()), "Message": message})


def _listen(url):
    result = CliRunner().invoke(cli, ["listen", url, "--once"])
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
        "no_mtl": "rejected",
    }
    assert "malformed message" in outcome[ids["garbage"]]["reason"]
    assert "MTL file" in outcome[ids["no_mtl"]]["reason"]
    assert _scene_names(queues["db"]) == sorted(
        ["LC08_L2SP_001062_20201031_02", tile, "S2A_13TDE_20231008_0_L2A"]
    )
    assert _drain(sqs, url) == []  # every message handled is deleted
    dead = _drain(sqs, queues["dlq"])
    assert sorted(m["Body"] for m in dead) == sorted([bodies["garbage"], bodies["no_mtl"]])
    assert all(m["MessageAttributes"]["rejected_because"]["StringValue"] for m in dead)

    # A redelivered notification (at-least-once delivery) updates the same row.
    sqs.send_message(QueueUrl=url, MessageBody=bodies["landsat"])
    assert _listen(url)[0] == 0
    assert len(_scene_names(queues["db"])) == 3


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
    monkeypatch.undo()
    assert _listen(url)[1][0]["outcome"] == "stored"  # the kept message, once the catalog is up


def test_a_bad_queue_url_is_refused(queues):
    result = CliRunner().invoke(cli, ["listen", "not-a-url", "--once"])
    assert result.exit_code == 2 and "give the queue's URL" in result.output
    missing = queues["url"].rsplit("/", 1)[0] + "/no-such-queue"
    result = CliRunner().invoke(cli, ["listen", missing, "--once"])
    assert result.exit_code == 2 and "does not exist" in result.output


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
    }
    code, lines, out = _listen(url)
    assert code == 0, out
    outcome = {line["message"]: line for line in lines if "message" in line}
    got = {k: outcome[m["MessageId"]]["outcome"] for k, m in ids.items()}
    assert got == {"good": "stored", "bad": "rejected", "no_uuid": "rejected"}
    assert "not a UUID" in outcome[ids["no_uuid"]["MessageId"]]["reason"]
    with db.connect(queues["db"]) as conn:
        assert uploads.upload_summary(conn, good)["status"] == "COMPLETE"
        assert uploads.upload_summary(conn, bad)["status"] == "FAILED"
    assert _drain(sqs, url) == []
    assert len(_drain(sqs, queues["dlq"])) == 2


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
