"""The package's exception hierarchy: permanent (bad input) versus transient (retry)."""

# The commands' exit codes, one per outcome (the README lists them); 0 is done.
BAD_INPUT = 2  # a bad id, parameter, path or setting
TASK_FAILED = 3
SCHEDULING_FAILED = 4
NOT_RUN = 5
MISSING_EXTERNAL = 6
ALREADY_RUNNING = 7  # another run is doing this work now
RETRY_LATER = 75  # EX_TEMPFAIL: a service or API was unavailable; the same command may succeed


class RfError(Exception):
    """Root of every error this package raises on purpose."""


class PermanentError(RfError):
    """Retrying cannot help: the input, configuration or request is wrong."""


class TransientError(RfError):
    """A service was unavailable or overloaded; the same call may succeed later."""


class ConfigError(PermanentError, ValueError):
    """A configuration value is missing or invalid; the message names the setting."""


class MissingBucket(ConfigError):
    """An ``s3://`` URL names a bucket that the configured S3 endpoint does not have."""


class NoRoom(ConfigError):
    """The scratch folder (RF_SCRATCH_DIR) lacks the room a job needs; nothing was started."""


class InvalidInput(PermanentError, ValueError):
    """User-supplied data (a file, id, path or date) is not acceptable."""


class NotFound(PermanentError, LookupError):
    """A row or object that the caller named does not exist."""


class IllegalTransition(PermanentError):
    """A status change that the status machine does not allow."""


class AlreadyRunning(RfError):
    """Another run is doing this work now: try again when it is done (exit 7)."""


class ServiceUnavailable(TransientError, ConnectionError):
    """A database, object store or scheduler could not be reached."""


class BuildFailed(RfError):
    """A Luigi build did not complete.

    Attributes:
        summary: luigi's execution summary.
        lines: one line per failed task: what failed, why, where its log is.
        failures: the failed tasks' records (task_id, family, params, error, kind, phase, log).
        exit_code: the command's exit code for this outcome.
    """

    def __init__(self, summary, exit_code=1, lines=(), failures=()):
        self.summary = summary
        self.failures = list(failures)
        self.lines = list(lines) or [summary.strip().splitlines()[-1] if summary.strip() else ""]
        super().__init__("\n".join(self.lines))
        self.exit_code = exit_code


def is_transient(error):
    """True for errors worth retrying: our TransientError, dropped or refused connections,
    timeouts, and S3 throttling or 5xx answers that outlived botocore's own retries."""
    if isinstance(error, TransientError):
        return True
    if isinstance(error, PermanentError):
        return False
    import botocore.exceptions
    import psycopg2

    if isinstance(error, (botocore.exceptions.ConnectionError, psycopg2.OperationalError)):
        return True
    if isinstance(error, botocore.exceptions.ClientError):
        meta = error.response.get("ResponseMetadata", {})
        code = error.response.get("Error", {}).get("Code", "")
        return meta.get("HTTPStatusCode", 0) >= 500 or "Throttl" in code or code == "SlowDown"
    return isinstance(error, (ConnectionError, TimeoutError))
