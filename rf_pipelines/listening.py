"""Imports scenes as their notifications arrive on an SQS queue.

A message, raw or wrapped in an SNS envelope (``{"Type": "Notification", "Message": "..."}``),
carries one of

- a STAC item (USGS publishes each new Landsat scene's item this way; Earth Search too),
- an S3 event (``Records[].s3``) for a new ``tileInfo.json`` in a Sentinel-2 bucket layout,
- ``{"upload_id": "..."}``: an upload ready to process, run as ProcessUpload through luigid,
- ``{"ingest_scene_id": "..."}``: a scene to ingest, run as IngestScene through luigid.

Each received batch is read with the import sources' code and stored in one transaction.
A message is deleted only after its scene is stored. A malformed message or a scene whose
metadata is bad is rejected for good: logged with its reason, sent to the queue's
dead-letter queue when it has one, and deleted. A transient failure (database or store
down) leaves the message on the queue, to come back after its visibility timeout; SQS moves
it to the dead-letter queue after the redrive policy's maxReceiveCount.
"""

import json
import logging
from dataclasses import dataclass, field
from urllib.parse import unquote_plus

from rf_pipelines import clients, config, retry, sources
from rf_pipelines.catalog import db, imports
from rf_pipelines.errors import InvalidInput, NotFound, PermanentError, is_transient

log = logging.getLogger(__name__)
WRITTEN_BY = imports.LISTENER_WRITTEN_BY


@dataclass
class Notification:
    """One received message and what it asks for."""

    message: dict
    source: object = None
    entry: object = None
    outcome: str = ""  # stored, rejected, retry
    reason: str = ""
    record: dict = field(default=None, repr=False)


def parse(body):
    """(source, entry) of a message body.

    Raises:
        InvalidInput: not JSON, or neither a STAC item nor an S3 event of a tileInfo.json.
    """
    try:
        value = json.loads(body)
        if isinstance(value, dict) and value.get("Type") == "Notification":
            value = json.loads(value["Message"])
    except (ValueError, KeyError, TypeError) as err:
        raise InvalidInput(f"not a JSON notification ({err})") from err
    if isinstance(value, dict) and value.get("type") == "Feature":
        return sources.for_item(value), value
    if isinstance(value, dict) and "upload_id" in value:
        from rf_pipelines.catalog.uploads import parse_upload_id

        return UPLOAD, str(parse_upload_id(value["upload_id"]))
    if isinstance(value, dict) and "ingest_scene_id" in value:
        from rf_pipelines.catalog.scenes import parse_scene_id

        return INGEST, str(parse_scene_id(value["ingest_scene_id"]))
    records = value.get("Records") if isinstance(value, dict) else None
    if isinstance(records, list) and len(records) == 1 and "s3" in records[0]:
        try:
            bucket = records[0]["s3"]["bucket"]["name"]
            key = unquote_plus(records[0]["s3"]["object"]["key"])
        except (KeyError, TypeError) as err:
            raise InvalidInput(f"an S3 event without bucket or key ({err})") from err
        if key.endswith("/tileInfo.json") and "tiles/" in key:
            root = f"s3://{bucket}/{key[: key.index('tiles/')]}".rstrip("/")
            return sources.Sentinel2Bucket(root), f"s3://{bucket}/{key}"
        raise InvalidInput(f"an S3 event for s3://{bucket}/{key}, which is not a tileInfo.json")
    raise InvalidInput("neither a STAC item nor an S3 event with one record")


def queue_client(queue_url):
    """The SQS client and the queue's dead-letter queue URL (None without a redrive policy).

    Raises:
        InvalidInput: not a queue URL.
        NotFound: no such queue.
    """
    if not queue_url.startswith(("http://", "https://")):
        raise InvalidInput(
            f"queue {queue_url!r}: give the queue's URL (https://sqs.../ACCOUNT/NAME)"
        )
    sqs = clients.aws_client("sqs")
    try:
        attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])
    except sqs.exceptions.QueueDoesNotExist as err:
        raise NotFound(f"queue {queue_url} does not exist") from err
    policy = attrs.get("Attributes", {}).get("RedrivePolicy")
    if not policy:
        return sqs, None
    arn = json.loads(policy)["deadLetterTargetArn"]
    account, name = arn.split(":")[4], arn.split(":")[5]
    return sqs, sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]


def listen(queue_url, once=False, wait_seconds=20, report=print):
    """Receives and imports until interrupted (or, with ``once``, until the queue is empty).

    Args:
        report: called with a dict per message (id, outcome, reason, scene).

    Returns:
        dict: counts of stored, rejected and retry outcomes.
    """
    sqs, dead_letters = queue_client(queue_url)
    counts = {"stored": 0, "rejected": 0, "retry": 0}
    kept = set()  # messages left for a retry: with ``once``, each is tried once
    while True:
        messages = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0 if once else wait_seconds,
            AttributeNames=["ApproximateReceiveCount"],
        ).get("Messages", [])
        if once and all(m["MessageId"] in kept for m in messages):
            return counts
        if not messages:
            continue
        for note in handle(messages):
            if note.outcome == "rejected" and dead_letters:
                sqs.send_message(
                    QueueUrl=dead_letters,
                    MessageBody=note.message["Body"],
                    MessageAttributes={
                        "rejected_because": {
                            "DataType": "String",
                            "StringValue": note.reason[:1000],
                        }
                    },
                )
            if note.outcome in ("stored", "rejected"):
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=note.message["ReceiptHandle"])
            else:
                kept.add(note.message["MessageId"])
                log.warning(
                    "message %s left for a retry: %s", note.message["MessageId"], note.reason
                )
            counts[note.outcome] += 1
            report(
                {
                    "message": note.message["MessageId"],
                    "outcome": note.outcome,
                    "reason": note.reason or None,
                    "scene": note.record and note.record["scene_key"],
                    "upload": note.entry if note.source is UPLOAD else None,
                    "ingest": note.entry if note.source is INGEST else None,
                }
            )


def handle(messages):
    """Reads and stores the scenes of a batch of messages; returns their Notifications."""
    notes = [Notification(m) for m in messages]
    for note in notes:
        try:
            note.source, note.entry = parse(note.message.get("Body", ""))
        except PermanentError as err:
            note.outcome, note.reason = "rejected", f"malformed message: {err}"
            log.error("message %s rejected: %s", note.message.get("MessageId"), note.reason)
    for note in [n for n in notes if n.source in (UPLOAD, INGEST)]:
        note.outcome, note.reason = _run_job(note.source, note.entry)
    for note in [n for n in notes if not n.outcome]:
        try:
            [outcome] = retry.call(note.source.read_batch, [note.entry])
        except Exception as err:  # noqa: BLE001 - sorted into transient and permanent
            outcome = err
        if isinstance(outcome, dict):
            outcome["scene_metadata"]["import_source"] = note.source.name
            note.record = outcome
        elif isinstance(outcome, Exception) and is_transient(outcome):
            note.outcome, note.reason = "retry", str(outcome)
        else:
            note.outcome, note.reason = "rejected", str(outcome)
    ready = [n for n in notes if n.record is not None]
    if ready:
        try:
            retry.call(_store, [n.record for n in ready])
            for note in ready:
                note.outcome = "stored"
        except Exception as err:  # noqa: BLE001 - the messages stay on the queue
            for note in ready:
                note.outcome, note.reason = "retry", f"could not store the scene: {err}"
    return notes


UPLOAD = "upload"
INGEST = "ingest"


def _run_job(kind, object_id):
    """(outcome, reason) of processing an upload or ingesting a scene through luigid:
    stored when done, rejected when every failure is bad input and the row ended FAILED with
    the reasons, retry on anything else: transient, unknown, another worker running it, or an
    upload put back unfinished."""
    from rf_pipelines.catalog import scenes
    from rf_pipelines.errors import BuildFailed
    from rf_pipelines.tasks import IngestScene, ProcessUpload
    from rf_pipelines.tasks.runner import ALREADY_RUNNING, build

    try:
        if kind == UPLOAD:
            task = ProcessUpload(upload_id=object_id)
        else:
            with db.transaction(config.settings().database_url) as conn:
                scenes.queue_for_ingest(conn, object_id)
            task = IngestScene(scene_id=object_id)
        build([task])
        return "stored", ""
    except BuildFailed as err:
        if any(f.get("kind") == "config" for f in err.failures):
            # This worker's settings are wrong, not the message: keep it for a fixed worker.
            return "retry", err.lines[-1]
        if (
            err.failures
            and all(f.get("kind") == "permanent" for f in err.failures)
            and _finished_failed(kind, object_id)
        ):
            return "rejected", f"{kind} {object_id} failed: {err.lines[-1]}"
        if err.exit_code == ALREADY_RUNNING:
            return "retry", f"{kind} {object_id} is being run by another worker"
        # A crash, an unknown error, a worker that died, a failure in another run: not the
        # message's fault. It comes back; the queue's maxReceiveCount bounds the attempts.
        return "retry", err.lines[-1]
    except PermanentError as err:
        return "rejected", str(err)
    except Exception as err:  # noqa: BLE001 - transient: the message comes back later
        return "retry", str(err)


def _finished_failed(kind, object_id):
    """True when the upload or scene ended FAILED: its bad input is the last word. An upload
    put back unfinished (luigid went away, say) is not, though its failures so far are bad
    input: the message comes back and the rest is done."""
    from rf_pipelines.catalog import scenes, uploads

    with db.connect(config.settings().database_url) as conn:
        if kind == UPLOAD:
            return uploads.get_upload(conn, object_id)["upload_status"] == "FAILED"
        return scenes.get_scene(conn, object_id)["ingest_status"] == "FAILED"


def _store(records):
    with db.transaction(config.settings().database_url) as conn:
        imports.upsert_scenes(conn, records, WRITTEN_BY)


def _text(value):
    return {"DataType": "String", "StringValue": value}
