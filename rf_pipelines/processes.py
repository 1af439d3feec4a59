"""A pool of forked processes for CPU-bound work on many small items (an upload's files).

Forked, not spawned: a child starts in milliseconds with the parent's modules, settings and
task classes. What a fork would share unsafely is made afresh in each child:

- boto3 clients (``clients`` forgets them after any fork): two processes reading responses
  from one inherited keep-alive socket would mix them up;
- GDAL keeps its HTTP connections per thread, so a child does its work on a thread of its
  own, never on the thread it inherited from the parent;
- obstore's runtime does not survive a fork (``targets.reading`` falls back to boto3);
- GDAL's global thread pool does not either: a child forked from a process that compressed
  with several threads waits forever for threads it does not have. A child runs GDAL on one
  thread (``gdal_threads``); the pool's processes are its parallelism.

A child dies with its parent (``PR_SET_PDEATHSIG``): a killed worker leaves nothing working
on files whose status the next run puts back.
"""

import ctypes
import multiprocessing
import multiprocessing.util
import os
import signal
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

_PR_SET_PDEATHSIG = 1
_thread = None  # the child's own work thread


def pool(processes):
    """A process pool of ``processes`` forked children; use it as a context manager."""
    return ProcessPoolExecutor(
        processes,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_child_started,
        initargs=(os.getpid(),),
    )


def call(fn, *args):
    """Calls ``fn(*args)`` on the child's own thread (see the module's note on GDAL); submit
    ``processes.call, fn, ...`` to a ``pool``."""
    return _thread.submit(fn, *args).result()


def gdal_threads():
    """GDAL's thread count for work in this process: "1" in a pool's child, else all cores."""
    return "1" if _thread is not None else "ALL_CPUS"


def _child_started(parent):
    global _thread
    os.environ["GDAL_NUM_THREADS"] = "1"
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: the parent's own exit still ends the pool
    if os.getppid() != parent:
        os._exit(1)  # the parent died before the signal was asked for
    _thread = ThreadPoolExecutor(1, thread_name_prefix="rf-child")
    from rf_pipelines.catalog import db

    db.keep_connections()  # a child works through many files: one connection, not three each
    multiprocessing.util.Finalize(None, db.close_kept, exitpriority=10)
