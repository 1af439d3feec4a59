"""A day of 20,000 Sentinel-2 scenes imported into PostgreSQL: 20,000 products, each a
productInfo.json and a tileInfo.json (made from the real 19UDP file as a template) served by
the local object store, against a baseline of one Luigi task per scene measured in the same
run; the same day through a proxy that adds 30 ms to every request (``bench/proxy.py``, as a
real store answers), against the first import; a rerun of the completed day; and a backfill
check over 365 completed days.
"""

import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import luigi
import psycopg2
from click.testing import CliRunner

from bench.timing import row
from rf_pipelines import clients, config, sources
from rf_pipelines.catalog import db, imports, migrate
from rf_pipelines.cli import cli
from rf_pipelines.tasks import DiscoverDay, ImportDay
from rf_pipelines.tasks.runner import build

TESTDATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "sentinel2"
TEMPLATE = json.loads(
    (TESTDATA / "sentinel-s2-l1c_tiles_19_U_DP_2017_7_29_0_tileInfo.json").read_text()
)
BUCKET = "rf-bench-s2-v3"  # v3: a product per tile, as on AWS (v1, v2: 500 tiles a product)
DAY = datetime.date(2021, 6, 1)
# The same for the batched import and the baseline (2 measured slower: the store and
# PostgreSQL share the 2 cores).
WORKERS = 1
SQUARES = [a + b for a in "CDEFGHJKLMNPQRSTUV" for b in "ABCDEFGHJKLMNPQRSTUV"]


NETWORK_DELAY_MS = 30


def _tile(index):
    """Tile ``index`` of the day: its own grid square, zone and sensing time, so that each
    is a scene of its own, and its own product (as on AWS since late 2016: a product is one
    tile, listed by its own productInfo.json)."""
    info = dict(TEMPLATE)
    zone = index // len(SQUARES) % 60 + 1
    square, sequence = SQUARES[index % len(SQUARES)], index // (len(SQUARES) * 60)
    info["path"] = f"tiles/{zone}/U/{square}/{DAY.year}/{DAY.month}/{DAY.day}/{sequence}"
    info["utmZone"], info["gridSquare"] = zone, square
    info["productName"] = (
        f"S2A_MSIL1C_{DAY:%Y%m%d}T1536{sequence:02d}_N0205_R{zone:03d}_T{zone:02d}U{square}"
        f"_{DAY:%Y%m%d}T170000"
    )
    info["timestamp"] = f"{DAY}T15:35:57.455Z"
    return info


def populate(count):
    """Writes the day's products and tiles once (kept in the bucket for later runs)."""
    s3 = clients.aws_client("s3", config.settings().s3_endpoint_url)
    try:
        s3.create_bucket(Bucket=BUCKET)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    source = sources.Sentinel2Bucket(f"s3://{BUCKET}")
    if len(source.discover(DAY)) == count:
        return

    def put_product(index):
        tile = _tile(index)
        name = tile["productName"]
        s3.put_object(Bucket=BUCKET, Key=f"{tile['path']}/tileInfo.json", Body=json.dumps(tile))
        s3.put_object(
            Bucket=BUCKET,
            Key=f"products/{DAY.year}/{DAY.month}/{DAY.day}/{name}/productInfo.json",
            Body=json.dumps({"name": name, "tiles": [{"path": tile["path"]}]}),
        )

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(put_product, range(count)))


class ImportOneScene(luigi.Task):
    """Baseline: what one-task-per-scene looks like (own read, own upsert, own marker)."""

    ref = luigi.Parameter()

    def output(self):
        from rf_pipelines.targets import MarkerTarget

        return MarkerTarget(f"one:{self.ref}", "ImportOneScene", 1, {"ref": self.ref})

    def run(self):
        [record] = sources.get_source("sentinel2").read_batch([self.ref])
        record["scene_metadata"]["import_source"] = "sentinel2"
        with self.output().transaction() as conn:
            imports.upsert_scenes(conn, [record], "ImportOneScene@v1")


class ImportScenesOneByOne(luigi.WrapperTask):
    refs = luigi.ListParameter()

    def requires(self):
        return [ImportOneScene(ref=r) for r in self.refs]


def _fresh_database():
    admin = config.settings().database_url.rsplit("/", 1)[0] + "/postgres"
    name = f"rf_bench_{uuid.uuid4().hex[:8]}"
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    url = admin.rsplit("/", 1)[0] + "/" + name
    migrate.migrate(url)
    os.environ["RF_DATABASE_URL"] = url
    config.settings.cache_clear()
    return admin, name


def _drop(admin, name):
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


def run(repeat=1, count=20_000, baseline_count=1_000):
    """Yields benchmark rows; ``repeat`` is unused (one day is one long measurement)."""
    import logging

    logging.getLogger("luigi-interface").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="rf-bench-imports-") as folder:
        os.environ["RF_DATA_ROOT"] = folder
        os.environ["RF_SENTINEL2_ROOT"] = f"s3://{BUCKET}"
        config.settings.cache_clear()
        populate(count)
        refs = sources.Sentinel2Bucket(f"s3://{BUCKET}").discover(DAY)

        admin, name = _fresh_database()
        try:
            direct = _import_day_seconds(Path(folder) / "direct")
            _assert_complete(count)
            rerun = _cli_seconds(["import", "sentinel2", "--date", str(DAY)])
            backfill = _backfill_seconds()
        finally:
            _drop(admin, name)

        admin, name = _fresh_database()
        try:
            with _delayed_store(NETWORK_DELAY_MS):
                far = _import_day_seconds(Path(folder) / "distant")
            _assert_complete(count)
        finally:
            _drop(admin, name)

        admin, name = _fresh_database()
        try:
            start = time.perf_counter()
            build(
                [ImportScenesOneByOne(refs=refs[:baseline_count])],
                local_scheduler=True,
                workers=WORKERS,
            )
            one_by_one = time.perf_counter() - start
        finally:
            _drop(admin, name)

    (found, ours), (found_far, distant) = direct, far
    base_rate = baseline_count / one_by_one
    yield row(
        f"import {count:,} discovered scenes in batches: {count / ours:,.0f} scenes/s",
        ours,
        f"1 task/scene: {base_rate:,.0f}/s",
        one_by_one * count / baseline_count,
    )
    yield row(
        f"same through a {NETWORK_DELAY_MS} ms store: {count / distant:,.0f} scenes/s",
        distant,
        "no added latency (above)",
        ours,
    )
    yield row(
        f"discovery through {NETWORK_DELAY_MS} ms: {count / found_far:,.0f} products/s",
        found_far,
        f"no added latency: {count / found:,.0f}/s",
        found,
    )
    yield row(
        f"whole day through {NETWORK_DELAY_MS} ms: {count / (found_far + distant):,.0f} scenes/s",
        found_far + distant,
        f"no added latency: {count / (found + ours):,.0f}/s",
        found + ours,
    )
    yield row("rerun of the completed day (CLI)", rerun, "-", float("nan"))
    yield row("backfill check over 365 completed days (CLI)", backfill, "-", float("nan"))


def _import_day_seconds(data_root):
    """(discovery, import) wall times of the day: DiscoverDay, then ImportDay on its
    manifest; a data root of its own, so no manifest of an earlier import is found."""
    os.environ["RF_DATA_ROOT"] = str(data_root)
    config.settings.cache_clear()
    params = {"source": "sentinel2", "day": DAY, "run_day": DAY}
    times = []
    for task in (DiscoverDay(**params), ImportDay(**params)):
        start = time.perf_counter()
        build([task], local_scheduler=True, workers=WORKERS)
        times.append(time.perf_counter() - start)
    return tuple(times)


def _assert_complete(count):
    with db.connect(config.settings().database_url) as conn:
        assert imports.day_report(conn, "sentinel2", DAY)["status"] == "COMPLETE"
        scenes = imports.day_scenes(conn, "sentinel2", DAY)
    assert len(scenes) == count, f"{len(scenes)} scenes, not {count}"


class _delayed_store:
    """Points the importer at the object store through ``bench/proxy.py`` in a process of
    its own, adding ``delay_ms`` to every request."""

    def __init__(self, delay_ms):
        self.delay_ms = delay_ms

    def __enter__(self):
        from rf_pipelines.targets import reading

        self.endpoint = config.settings().s3_endpoint_url
        upstream = self.endpoint.rsplit("/", 1)[-1]
        self.proxy = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.proxy",
                "--upstream",
                upstream,
                "--delay-ms",
                str(self.delay_ms),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        os.environ["AWS_ENDPOINT_URL_S3"] = self.proxy.stdout.readline().strip()
        config.settings.cache_clear()
        clients.reset()
        reading.reset()
        return self

    def __exit__(self, *exc):
        from rf_pipelines.targets import reading

        self.proxy.terminate()
        self.proxy.wait(10)
        os.environ["AWS_ENDPOINT_URL_S3"] = self.endpoint
        config.settings.cache_clear()
        clients.reset()
        reading.reset()
        return False


def _cli_seconds(args):
    start = time.perf_counter()
    result = CliRunner().invoke(cli, args + ["--local-scheduler"])
    seconds = time.perf_counter() - start
    assert result.exit_code == 0, result.output[-2000:]
    return seconds


def _backfill_seconds():
    """Marks 365 days complete through the catalog, then times a backfill over them."""
    first = DAY - datetime.timedelta(364)
    with db.transaction(config.settings().database_url) as conn:
        for n in range(365):
            day = first + datetime.timedelta(n)
            if day != DAY:
                imports.start_day(conn, "sentinel2", day, 0, None)
                imports.finish_day(conn, "sentinel2", day)
    return _cli_seconds(["import", "sentinel2", "--start", str(first), "--stop", str(DAY)])
