"""Progress of long commands on the terminal: a bar on a TTY, else a line now and then.

The work runs in luigi's workers; a thread of the command polls the catalog for what is done.
``RF_PROGRESS_INTERVAL`` (seconds, default 15) sets how often a line is printed off a TTY.
"""

import contextlib
import os
import sys
import threading
import time

BAR_WIDTH = 30


def progress_interval():
    """``RF_PROGRESS_INTERVAL``: seconds between progress lines off a TTY (default 15).

    Raises:
        ConfigError: not a positive number.
    """
    from rf_pipelines.errors import ConfigError

    value = os.environ.get("RF_PROGRESS_INTERVAL", "15")
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0
    if not seconds > 0:
        raise ConfigError(f"RF_PROGRESS_INTERVAL: {value!r} is not a positive number of seconds")
    return seconds


@contextlib.contextmanager
def watching(label, total, poll, stream=None):
    """Shows ``poll()`` (items done) against ``total`` while the block runs."""
    stream = stream or sys.stderr
    if total <= 1:
        yield
        return
    tty = stream.isatty()
    interval = 0.5 if tty else progress_interval()
    stop = threading.Event()
    started = time.monotonic()

    def show(final=False):
        try:
            done = min(poll(), total)
        except Exception:  # noqa: BLE001 - progress is best effort; the work goes on
            return
        elapsed = time.monotonic() - started
        if tty:
            filled = int(BAR_WIDTH * done / total)
            bar = "#" * filled + "." * (BAR_WIDTH - filled)
            stream.write(f"\r{label} [{bar}] {done}/{total} {elapsed:.0f}s")
            if final:
                stream.write("\n")
        else:
            stream.write(f"{label}: {done}/{total} ({100 * done // total}%) after {elapsed:.0f}s\n")
        stream.flush()

    def loop():
        while not stop.wait(interval):
            show()

    thread = threading.Thread(target=loop, name="progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        show(final=True)
