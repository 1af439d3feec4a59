"""A decade's backfill through a real luigid, with the visualiser's queries timed meanwhile.

A mirror of the Sentinel-2 bucket layout with 3 scenes a day (a productInfo.json and a
tileInfo.json each, made from the real 19UDP file) from 2016-01-01 to 2025-12-31 (3,653
days, 10,959 products; written once, with 32 writers, and kept in the store for later
runs). ``rf-pipelines import sentinel2 --start ... --stop ...`` runs in a process of its own
against a luigid of its own (as ``rf-pipelines scheduler`` configures it: finished tasks kept
for a day, the task history in PostgreSQL), while a thread of this process asks luigid's
``/api/task_list`` for the PENDING, RUNNING and DONE tasks and the PENDING ones whose
upstream failed (the visualiser's queries) every 0.5 s, timing each answer.

Baseline, in the same run: the same decade as one build of every day's ImportDay (what the
command did before windows), against a fresh catalog and luigid of its own too, stopped after
``RF_BENCH_BACKFILL_BASELINE_S`` (default 300 s; run whole it would take longer than this
2-core machine's benchmark may). Compared: the scenes each imported in those first seconds,
and luigid's answers meanwhile. The whole benchmark takes about 30 minutes on the 2-core
machine (the decade 26); ``RF_BENCH_BACKFILL_DAYS`` shortens the decade for a quick look.
"""

import datetime
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.imports import TEMPLATE, _drop, _fresh_database
from bench.timing import row
from rf_pipelines import clients, config, scheduler
from rf_pipelines.catalog import db

BUCKET = "rf-bench-s2-decade-v1"
FIRST = datetime.date(2016, 1, 1)
DECADE = 3653
SCENES_PER_DAY = 3
SQUARES = ["DP", "DQ", "EP"]
# The visualiser's list queries (status, upstream_status) that a busy luigid answers slowest.
QUERIES = [("PENDING", ""), ("RUNNING", ""), ("DONE", ""), ("PENDING", "UPSTREAM_FAILED")]
SAMPLE_EVERY_S = 0.5


def _product(day, square):
    """The real 19UDP tile moved to ``day`` and grid square ``square``: (productInfo,
    tileInfo), each product its own scene."""
    info = dict(TEMPLATE)
    info["path"] = f"tiles/19/U/{square}/{day.year}/{day.month}/{day.day}/0"
    info["gridSquare"] = square
    info["timestamp"] = f"{day}T15:35:57.455Z"
    made = f"{day:%Y%m%d}T170000"
    info["productName"] = f"S2A_MSIL1C_{day:%Y%m%d}T153601_N0205_R111_T19U{square}_{made}"
    return {"name": info["productName"], "tiles": [{"path": info["path"]}]}, info


def populate(days):
    """Writes the mirror's products of the first ``days`` days once (kept for later runs)."""
    s3 = clients.aws_client("s3", config.settings().s3_endpoint_url)
    try:
        s3.create_bucket(Bucket=BUCKET)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    written = sum(
        page.get("KeyCount", 0)
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="products/")
    )
    if written >= days * SCENES_PER_DAY:
        return

    def put(index):
        day, square = FIRST + datetime.timedelta(index // 3), SQUARES[index % 3]
        product, tile = _product(day, square)
        s3.put_object(Bucket=BUCKET, Key=f"{tile['path']}/tileInfo.json", Body=json.dumps(tile))
        folder = f"products/{day.year}/{day.month}/{day.day}/{product['name']}"
        s3.put_object(Bucket=BUCKET, Key=f"{folder}/productInfo.json", Body=json.dumps(product))

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(put, range(days * SCENES_PER_DAY)))


class Luigid:
    """A luigid of its own for one measurement, configured as ``rf-pipelines scheduler``
    runs it (finished tasks kept a day, history in PostgreSQL), stopped afterwards."""

    def __enter__(self):
        self.folder = tempfile.TemporaryDirectory(prefix="rf-bench-luigid-")
        folder = Path(self.folder.name)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        (folder / "luigi.cfg").write_text(
            scheduler.luigid_config(
                folder / "state.pickle",
                config.settings().task_history_url,
                stable_done_cooldown_secs=0,
            )
        )
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "LUIGI_CONFIG_PATH": str(folder / "luigi.cfg")}
        with open(folder / "log", "wb") as log:
            self.process = subprocess.Popen(
                scheduler.luigid_argv("127.0.0.1", port), env=env, stdout=log, stderr=log
            )
        for _ in range(300):
            try:
                urllib.request.urlopen(self.url + "/api/task_list?data=%7B%7D", timeout=1)
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"luigid did not start; see {folder / 'log'}")

    def __exit__(self, *exc):
        self.process.terminate()
        self.process.wait(30)
        self.folder.cleanup()


class Sampler(threading.Thread):
    """Times luigid's answers to the visualiser's queries every SAMPLE_EVERY_S seconds, and
    counts the tasks it holds (not done, and done) and the scenes imported so far."""

    def __init__(self, url, database_url):
        super().__init__(daemon=True)
        self.url, self.database_url = url, database_url
        self.latencies, self.held, self.done, self.scenes = [], [0], [0], [(0.0, 0)]
        self._finished = threading.Event()

    def _ask(self, status, upstream):
        data = json.dumps({"status": status, "upstream_status": upstream, "search": ""})
        url = f"{self.url}/api/task_list?data={urllib.parse.quote(data)}"
        start = time.perf_counter()
        try:
            with urllib.request.urlopen(url, timeout=120) as answer:
                body = json.loads(answer.read())["response"]
        except OSError:
            body = {}  # no answer in 2 minutes: its wait is the figure
        self.latencies.append(time.perf_counter() - start)
        return body["num_tasks"] if "num_tasks" in body else len(body)

    def run(self):
        start = time.perf_counter()
        with db.connect(self.database_url) as conn:
            conn.autocommit = True
            while not self._finished.wait(SAMPLE_EVERY_S):
                counts = {query: self._ask(*query) for query in QUERIES}
                self.held.append(counts["PENDING", ""] + counts["RUNNING", ""])
                self.done.append(counts["DONE", ""])
                with conn.cursor() as cur:
                    cur.execute("SELECT count(*) FROM scenes")
                    self.scenes.append((time.perf_counter() - start, cur.fetchone()[0]))

    def scenes_by(self, seconds):
        """Scenes imported in the first ``seconds`` of the run."""
        return max(n for t, n in self.scenes if t <= seconds)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self._finished.set()
        self.join()


def _measure(folder, days, one_build=False, stop_after=None):
    """Backfills ``days`` days from FIRST in a fresh catalog, data root and luigid, stopped
    after ``stop_after`` seconds if given; returns (seconds, sampler)."""
    last = FIRST + datetime.timedelta(days - 1)
    admin, name = _fresh_database()
    url = os.environ["RF_DATABASE_URL"]
    try:
        with Luigid() as luigid:
            env = {
                **os.environ,
                "RF_DATA_ROOT": str(Path(folder) / f"{name}"),
                "RF_SCHEDULER_URL": luigid.url,
                "RF_PROGRESS_INTERVAL": "60",
            }
            if one_build:
                argv = [sys.executable, "-m", "bench.backfill", str(FIRST), str(last)]
            else:
                argv = [sys.executable, "-m", "rf_pipelines.cli", "import", "sentinel2"]
                argv += ["--start", str(FIRST), "--stop", str(last)]
            with Sampler(luigid.url, url) as sampler:
                start = time.perf_counter()
                command = subprocess.Popen(
                    argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
                )
                try:
                    _, errors = command.communicate(timeout=stop_after)
                except subprocess.TimeoutExpired:
                    command.kill()
                    command.communicate()
                seconds = time.perf_counter() - start
        if stop_after is None:
            assert command.returncode == 0, errors[-2000:]
            with db.connect(url) as conn, conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM import_days WHERE status = 'COMPLETE'")
                assert cur.fetchone()[0] == days
                cur.execute("SELECT count(*) FROM scenes")
                assert cur.fetchone()[0] == days * SCENES_PER_DAY
    finally:
        _drop(admin, name)
    return seconds, sampler


def _figures(label, seconds, sampler):
    lat = sampler.latencies or [float("nan")]
    scenes = sampler.scenes[-1][1]
    print(
        f"{label}: {scenes:,} scenes in {seconds:,.0f} s ({scenes / seconds:,.1f} scenes/s); "
        f"task_list max {max(lat):.3f} s, median {statistics.median(lat):.3f} s over "
        f"{len(lat):,} answers; luigid held at most {max(sampler.held):,} tasks not done "
        f"and {max(sampler.done):,} done",
        flush=True,
    )
    return max(lat)


def run(repeat=1):
    """Yields benchmark rows; ``repeat`` is unused (each figure is one long run)."""
    days = int(os.environ.get("RF_BENCH_BACKFILL_DAYS", DECADE))
    cut = float(os.environ.get("RF_BENCH_BACKFILL_BASELINE_S", 300))
    os.environ["RF_SENTINEL2_ROOT"] = f"s3://{BUCKET}"
    config.settings.cache_clear()
    start = time.perf_counter()
    populate(days)
    print(f"mirror ready in {time.perf_counter() - start:.0f} s", flush=True)
    with tempfile.TemporaryDirectory(prefix="rf-bench-backfill-") as folder:
        ours, windows = _measure(folder, days)
        ours_max = _figures(f"{days:,} days in windows", ours, windows)
        theirs, one = _measure(folder, days, one_build=True, stop_after=cut)
        one_max = _figures(f"{days:,} days as one build, stopped at {cut:.0f} s", theirs, one)
    early, early_one = windows.scenes_by(cut), one.scenes_by(cut)
    print(
        f"scenes imported in the first {cut:.0f} s: {early:,} in windows, "
        f"{early_one:,} as one build"
    )
    scenes = days * SCENES_PER_DAY
    yield row(
        f"backfill {days:,} days in windows: {scenes / ours:,.0f} scenes/s", ours, "-", float("nan")
    )
    yield row(
        f"s per 1,000 scenes, first {cut:.0f} s",
        cut / max(early, 1) * 1000,
        f"one build: {early_one:,} scenes",
        cut / early_one * 1000 if early_one else float("inf"),
    )
    yield row(
        f"task_list max ({max(windows.held):,} tasks not done)",
        ours_max,
        f"one build ({max(one.held):,})",
        one_max,
    )


def one_build(first, last):
    """The backfill as one build of every day's ImportDay (the command before windows)."""
    from rf_pipelines.catalog import imports
    from rf_pipelines.tasks import ImportDay
    from rf_pipelines.tasks.runner import build

    days = [first + datetime.timedelta(n) for n in range((last - first).days + 1)]
    with db.connect(config.settings().database_url) as conn:
        done = imports.complete_days(conn, "sentinel2", first, last)
    tasks = [ImportDay(source="sentinel2", day=d, run_day=d) for d in days if d not in done]
    build(tasks)


if __name__ == "__main__":
    import luigi.configuration

    luigi.configuration.get_config().set("core", "no_configure_logging", "true")
    one_build(*(datetime.date.fromisoformat(arg) for arg in sys.argv[1:3]))
