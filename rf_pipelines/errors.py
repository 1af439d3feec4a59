"""The package's exception hierarchy: permanent (bad input) versus transient (retry)."""


class RfError(Exception):
    """Root of every error this package raises on purpose."""


class PermanentError(RfError):
    """Retrying cannot help: the input, configuration or request is wrong."""


class TransientError(RfError):
    """A service was unavailable or overloaded; the same call may succeed later."""


class ConfigError(PermanentError, ValueError):
    """A configuration value is missing or invalid; the message names the setting."""


class InvalidInput(PermanentError, ValueError):
    """User-supplied data (a file, id, path or date) is not acceptable."""


class NotFound(PermanentError, LookupError):
    """A row or object that the caller named does not exist."""


class IllegalTransition(PermanentError):
    """A status change that the status machine does not allow."""


class ServiceUnavailable(TransientError, ConnectionError):
    """A database, object store or scheduler could not be reached."""


class BuildFailed(RfError):
    """A Luigi build did not complete; the message carries luigi's summary."""

    def __init__(self, message, exit_code=1):
        super().__init__(message)
        self.exit_code = exit_code
