"""Imports scenes as their notifications arrive on an SQS queue.

A message, raw or wrapped in an SNS envelope (``{"Type": "Notification", "Message": "..."}``),
carries one of

- a STAC item (USGS publishes each new Landsat scene's item this way; Earth Search too),
- an S3 event (``Records[].s3``) for a new ``tileInfo.json`` in a Sentinel-2 bucket layout,
- ``{"upload_id": "..."}``: an upload ready to process, run as ProcessUpload through luigid,
- ``{"ingest_scene_id": "..."}``: a scene to ingest, run as IngestScene through luigid.

Each received batch is read with the import sources' code and stored in one transaction.
While a batch waits and runs, a thread keeps its messages invisible to other listeners
(ChangeMessageVisibility, every third of the queue's visibility timeout), so a job longer
than the timeout is not delivered twice. A message is deleted only after its scene is
stored or its job is done.

- **Permanent** (a malformed message, bad metadata, an upload or scene that does not exist,
  an upload that ended FAILED on bad input): rejected for good, logged with its reason,
  sent to the queue's dead-letter queue when it has one, and deleted.
- **Transient** (the store answering 5xx, a timeout, a refused connection, the catalog or
  luigid down, a job that crashed or was put back unfinished): the message is left alone
  and comes back after its visibility timeout; SQS moves it to the dead-letter queue after
  the redrive policy's maxReceiveCount.

A failure to send to the dead-letter queue or to delete is logged; the message then comes
back and is handled again (the imports are idempotent). SIGTERM (or Ctrl-C) lets the current
message finish, gives the batch's other messages back to the queue (visibility 0) and ends
the listener with exit 0.
"""

import json
import logging
import os
import signal
import threading
from dataclasses import dataclass, field
from urllib.parse import unquote_plus

from rf_pipelines import clients, config, retry, sources
from rf_pipelines.catalog import db, imports
from rf_pipelines.errors import (
    ConfigError,
    InvalidInput,
    NotFound,
    PermanentError,
    RfError,
    TransientError,
    is_transient,
)

log = logging.getLogger(__name__)
WRITTEN_BY = imports.LISTENER_WRITTEN_BY
# Messages are held at least this long by each extension, whatever the queue says.
MIN_HOLD_S = 2
# A message to be retried comes back after its hold times 2 ** (receives - 1), at most this:
# an outage of a few minutes does not use up the redrive policy's receives at once.
MAX_BACKOFF_S = 900


@dataclass
class Notification:
    """One received message and what it asks for."""

    message: dict
    source: object = None
    entry: object = None
    outcome: str = ""  # stored, rejected, retry; stopped: not started, the listener stops
    reason: str = ""
    record: dict = field(default=None, repr=False)


def parse(body):
    """(source, entry) of a message body.

    Raises:
        InvalidInput: not JSON, or neither a STAC item nor an S3 event of a tileInfo.json, or
            one of odd shape (``{"Records": [1]}``).
    """
    try:
        return _parse(body)
    except RfError:
        raise
    except Exception as err:  # noqa: BLE001 - any odd shape is the message's fault
        raise InvalidInput(f"an unreadable notification ({type(err).__name__}: {err})") from err


def _parse(body):
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


@dataclass
class Queue:
    """A queue as the listener uses it."""

    sqs: object
    url: str
    dead_letters: str | None  # the dead-letter queue's URL, None without a redrive policy
    visibility_s: int  # the queue's VisibilityTimeout


def open_queue(queue_url):
    """The queue at ``queue_url``, its dead-letter queue and its visibility timeout.

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
        attrs = sqs.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["RedrivePolicy", "VisibilityTimeout"]
        ).get("Attributes", {})
    except sqs.exceptions.QueueDoesNotExist as err:
        raise NotFound(f"queue {queue_url} does not exist") from err
    dead = None
    if attrs.get("RedrivePolicy"):
        arn = json.loads(attrs["RedrivePolicy"])["deadLetterTargetArn"]
        account, name = arn.split(":")[4], arn.split(":")[5]
        dead = sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
    return Queue(sqs, queue_url, dead, int(attrs.get("VisibilityTimeout", 30)))


def listen(queue_url, once=False, wait_seconds=20, batch=10, report=print):
    """Receives and imports until stopped (SIGTERM, Ctrl-C) or, with ``once``, until the
    queue has nothing new.

    Args:
        batch: messages received at a time (1-10).
        report: called with a dict per message (id, outcome, reason, scene).

    Returns:
        dict: counts of stored, rejected and retry outcomes.
    """
    queue = open_queue(queue_url)
    counts = {"stored": 0, "rejected": 0, "retry": 0}
    kept = set()  # messages left for a retry: with ``once``, each is tried once
    with _Holder(queue) as holder, _Stop() as stop:
        while not stop.requested:
            messages = queue.sqs.receive_message(
                QueueUrl=queue.url,
                MaxNumberOfMessages=batch,
                WaitTimeSeconds=0 if once else wait_seconds,
                AttributeNames=["ApproximateReceiveCount"],
            ).get("Messages", [])
            if stop.requested or (once and all(m["MessageId"] in kept for m in messages)):
                holder.release(messages)
                return counts
            holder.hold(messages)
            for note in handle(messages, stop=stop):
                if note.outcome == "stopped":
                    holder.release([note.message])
                    continue
                _settle(queue, holder, note)
                if note.outcome == "retry":
                    kept.add(note.message["MessageId"])
                counts[note.outcome] += 1
                report(_report_line(note))
    return counts


def _settle(queue, holder, note):
    """Ends a handled message: to the dead-letter queue and deleted when rejected, deleted
    when stored, left to come back after its visibility timeout when it is to be retried.
    A failed send or delete is logged: the message comes back and is handled again."""
    holder.done(note.message)
    message_id = note.message["MessageId"]
    if note.outcome == "retry":
        receives = int(note.message.get("Attributes", {}).get("ApproximateReceiveCount", 1))
        backoff = min(holder.hold_s * 2 ** max(receives - 1, 0), MAX_BACKOFF_S)
        log.warning(
            "message %s left for a retry in %d s (receive %d): %s",
            message_id,
            backoff,
            receives,
            note.reason,
        )
        holder.change([(message_id, note.message["ReceiptHandle"])], backoff)
        return
    try:
        if note.outcome == "rejected" and queue.dead_letters:
            queue.sqs.send_message(
                QueueUrl=queue.dead_letters,
                MessageBody=note.message["Body"],
                MessageAttributes={"rejected_because": _text(note.reason[:1000] or "-")},
            )
        queue.sqs.delete_message(QueueUrl=queue.url, ReceiptHandle=note.message["ReceiptHandle"])
    except Exception as err:  # noqa: BLE001 - the message comes back: handled again
        log.error("message %s (%s) could not be settled: %s", message_id, note.outcome, err)
        note.reason = f"{note.reason} (not settled, it comes back: {err})".strip()


def _report_line(note):
    return {
        "message": note.message["MessageId"],
        "outcome": note.outcome,
        "reason": note.reason or None,
        "scene": note.record and note.record["scene_key"],
        "upload": note.entry if note.source is UPLOAD else None,
        "ingest": note.entry if note.source is INGEST else None,
    }


class _Holder:
    """Keeps received messages invisible while they wait and run: a thread extends each
    held message's visibility to the queue's timeout (at least MIN_HOLD_S) every third of
    it, until the message is settled, given back or the listener stops."""

    def __init__(self, queue):
        from botocore.config import Config

        self.queue = queue
        self.hold_s = max(queue.visibility_s, MIN_HOLD_S)
        # Its own client: short timeouts and one attempt, so that a stalled call does not
        # outlast the hold; a failed beat is tried again on the next one (a third later).
        self.sqs = clients._session().client(
            "sqs",
            config=Config(
                connect_timeout=min(self.hold_s / 3, 5),
                read_timeout=min(self.hold_s / 3, 5),
                retries={"max_attempts": 1, "mode": "standard"},
            ),
        )
        self.handles = {}  # message id -> receipt handle
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="sqs-visibility", daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join(30)
        with self.lock:
            leftover = list(self.handles.items())
            self.handles.clear()
            self.change(leftover, 0)  # an interrupted job's message too
        return False

    def hold(self, messages):
        with self.lock:
            self.handles.update((m["MessageId"], m["ReceiptHandle"]) for m in messages)
        if self.queue.visibility_s < MIN_HOLD_S:
            self.change([(m["MessageId"], m["ReceiptHandle"]) for m in messages], self.hold_s)

    def done(self, message):
        """No more holding: the message is settled. (Under the lock: a beat in flight
        finishes first, so it cannot hide a message given back just after.)"""
        with self.lock:
            self.handles.pop(message["MessageId"], None)

    def release(self, messages):
        """Gives messages back to the queue now (visibility 0)."""
        for message in messages:
            self.done(message)
        self.change([(m["MessageId"], m["ReceiptHandle"]) for m in messages], 0)

    def _run(self):
        while not self.stopped.wait(self.hold_s / 3):
            with self.lock:
                self.change(list(self.handles.items()), self.hold_s)

    def change(self, held, seconds):
        """Sets the visibility of ``held`` (message id, receipt handle) pairs; logs failures."""
        for start in range(0, len(held), 10):
            entries = [
                {"Id": str(n), "ReceiptHandle": handle, "VisibilityTimeout": seconds}
                for n, (_, handle) in enumerate(held[start : start + 10])
            ]
            try:
                failed = self.sqs.change_message_visibility_batch(
                    QueueUrl=self.queue.url, Entries=entries
                ).get("Failed", [])
            except Exception as err:  # noqa: BLE001 - tried again on the next beat
                log.warning("could not set the visibility of %d messages: %s", len(entries), err)
                continue
            for failure in failed:
                message_id = held[start + int(failure["Id"])][0]
                log.warning(
                    "could not set the visibility of message %s: %s",
                    message_id,
                    failure.get("Message") or failure.get("Code"),
                )


class _Stop:
    """SIGTERM and SIGINT ask the listener to stop: the current message finishes, the others
    go back to the queue. A wait for messages ends within its long poll (``--wait-seconds``)
    and what it received is given back. (Signals reach only the main thread: elsewhere the
    listener runs until its caller stops it.)"""

    def __init__(self):
        self.requested = False
        self.previous = {}
        self.pid = os.getpid()

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGTERM, signal.SIGINT):
                self.previous[number] = signal.signal(number, self._on_signal)
        return self

    def __exit__(self, *exc):
        for number, handler in self.previous.items():
            signal.signal(number, handler)
        return False

    def _on_signal(self, number, frame):
        if os.getpid() != self.pid:
            # A process forked while a job ran (luigi's tracking-URL reader of a Spark step)
            # inherits this handler: there the signal means what it always does, or the
            # fork would outlive its terminate() and hold up its parent's exit for good.
            signal.signal(number, signal.SIG_DFL)
            os.kill(os.getpid(), number)
            return
        log.warning("signal %d: stopping after the current message", number)
        self.requested = True


def handle(messages, stop=None):
    """Reads and stores the scenes of a batch of messages; returns their Notifications.
    Once ``stop.requested``, jobs not yet started are left ``stopped``."""
    notes = [Notification(m) for m in messages]
    for note in notes:
        try:
            note.source, note.entry = parse(note.message.get("Body") or "")
        except PermanentError as err:
            note.outcome, note.reason = "rejected", f"malformed message: {err}"
            log.error("message %s rejected: %s", note.message.get("MessageId"), note.reason)
    for note in [n for n in notes if n.source in (UPLOAD, INGEST)]:
        if stop is not None and stop.requested:
            note.outcome = "stopped"
            continue
        note.outcome, note.reason = _run_job(note.source, note.entry)
    for note in [n for n in notes if not n.outcome]:
        try:
            outcome = retry.call(_read_one, note.source, note.entry)
        except Exception as err:  # noqa: BLE001 - sorted into transient and permanent
            outcome = err
        if isinstance(outcome, dict):
            outcome["scene_metadata"]["import_source"] = note.source.name
            note.record = outcome
        elif isinstance(outcome, PermanentError) and not isinstance(outcome, ConfigError):
            note.outcome, note.reason = "rejected", str(outcome)
        else:  # transient, this worker's settings, or unknown: not the message's fault
            note.outcome, note.reason = "retry", str(outcome)
            if not is_transient(outcome):
                log.error("message %s: %r", note.message.get("MessageId"), outcome)
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


def _read_one(source, entry):
    """The entry's record or permanent error; a transient one is raised, to be retried."""
    [outcome] = source.read_batch([entry])
    if isinstance(outcome, TransientError):
        raise outcome
    return outcome


def _run_job(kind, object_id):
    """(outcome, reason) of processing an upload or ingesting a scene through luigid:
    stored when done, rejected when every failure is bad input and the row ended FAILED with
    the reasons, retry on anything else: transient, unknown, another worker running it, or an
    upload put back unfinished."""
    from rf_pipelines.catalog import scenes, uploads
    from rf_pipelines.errors import BuildFailed
    from rf_pipelines.tasks import IngestScene, ProcessUpload
    from rf_pipelines.tasks.runner import ALREADY_RUNNING, build

    try:
        if kind == UPLOAD:
            with db.connect(config.settings().database_url) as conn:
                uploads.get_upload(conn, object_id)  # NotFound: rejected, not retried
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
    input: the message comes back and the rest is done. Unknown (the catalog down, the row
    gone) is not either."""
    from rf_pipelines.catalog import scenes, uploads

    try:
        with db.connect(config.settings().database_url) as conn:
            if kind == UPLOAD:
                return uploads.get_upload(conn, object_id)["upload_status"] == "FAILED"
            return scenes.get_scene(conn, object_id)["ingest_status"] == "FAILED"
    except Exception as err:  # noqa: BLE001 - the message comes back and is looked at again
        log.warning("could not tell how %s %s ended: %s", kind, object_id, err)
        return False


def _store(records):
    with db.transaction(config.settings().database_url) as conn:
        imports.upsert_scenes(conn, records, WRITTEN_BY)


def _text(value):
    return {"DataType": "String", "StringValue": value}
