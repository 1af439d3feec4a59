"""Backfills in windows through the suite's luigid: bounded tasks, failures, reruns."""

import datetime
import json
import socket
import threading

import pytest
from click.testing import CliRunner
from luigi.rpc import RemoteScheduler

from rf_pipelines import clients, config
from rf_pipelines.cli import cli
from rf_pipelines.tasks import backfill
from rf_pipelines.tasks.imports import BATCH_SIZE
from rf_pipelines.tasks.runner import scheduler_url
from tests import mirror

BOUND = 9  # windows of 3 days: 3 tasks each (DiscoverDay, ImportDay, one ImportBatch)
FAMILIES = ("DiscoverDay", "ImportDay", "ImportBatch")


def _days(month):
    """7 days of 2019 no other test imports, so that luigid's tasks of them are the test's."""
    return [datetime.date(2019, month, 1) + datetime.timedelta(n) for n in range(7)]


def _backfill(days):
    first, last = str(days[0]), str(days[-1])
    result = CliRunner().invoke(cli, ["import", "sentinel2", "--start", first, "--stop", last])
    reports = [json.loads(line) for line in result.output.splitlines() if line.startswith('{"')]
    return result.exit_code, reports, result.output


def _ours(tasks, days):
    """luigid's tasks (id -> task) of a backfill of ``days``."""
    wanted = {str(d) for d in days}
    return {
        task_id: task
        for task_id, task in tasks.items()
        if task["name"].rsplit(".", 1)[-1] in FAMILIES and task["params"].get("day") in wanted
    }


class _Builds:
    """Records each build of the backfill (the real one runs) and what luigid then holds of
    the build's days; ``before`` runs before a build, given its number."""

    def __init__(self, monkeypatch, before=None):
        self.days, self.held = [], []
        self._build, self._before = backfill.build, before
        self._luigid = RemoteScheduler(scheduler_url())  # the suite's, whatever the test does
        monkeypatch.setattr(backfill, "build", self)

    def __call__(self, tasks, **kwargs):
        days = sorted({t.day for t in tasks})
        self.days.append(days)
        if self._before:
            self._before(len(self.days))
        try:
            return self._build(tasks, **kwargs)
        finally:
            self.held.append(len(_ours(self._luigid.task_list("", ""), days)))


class _Sampler(threading.Thread):
    """Samples how many tasks of the backfill luigid holds (done or not), every 50 ms."""

    def __init__(self, days):
        super().__init__(daemon=True)
        self.days, self.counts, self._done = days, [], threading.Event()

    def run(self):
        luigid = RemoteScheduler(scheduler_url())
        while not self._done.wait(0.05):
            self.counts.append(len(_ours(luigid.task_list("", ""), self.days)))

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self.join()


def test_windows_and_groups_keep_to_the_bound():
    days = list(range(10))
    assert backfill.windows(days, 9) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert backfill.windows(days, 2) == [[n] for n in days]
    # 2 tasks a day without scenes, 3 with up to BATCH_SIZE, 4 with more; unknown as one batch.
    counts = {0: 0, 1: 1, 2: BATCH_SIZE + 1, 3: 10 * BATCH_SIZE}
    assert backfill.groups([0, 1, 2, 4], counts, 9) == [[0, 1, 2], [4]]
    assert backfill.groups([3, 0], counts, 9) == [[3], [0]]  # a day over the bound, alone


def test_a_backfill_runs_in_windows_that_keep_luigid_within_the_bound(
    s2_bucket, settings_env, monkeypatch
):
    settings_env.setenv("RF_BACKFILL_TASKS", str(BOUND))  # read with the settings, below
    days = _days(3)
    for day in days:
        mirror.put_day(s2_bucket, day, ["DP"])
    builds = _Builds(monkeypatch)
    with _Sampler(days) as sampler:
        code, reports, out = _backfill(days)
    assert code == 0, out
    assert [r["status"] for r in reports] == ["COMPLETE"] * 7
    # Each window: its days discovered, then imported.
    windows = [days[0:3], days[3:6], days[6:7]]
    assert builds.days == [w for w in windows for _ in (0, 1)]
    # What luigid holds of each build's days as it ends: 3 tasks a day, within the bound.
    assert builds.held == [3, 9, 3, 9, 1, 3]
    assert 0 < max(sampler.counts) <= BOUND
    # Each build's finished tasks were forgotten: luigid keeps none of them for the day.
    assert _ours(RemoteScheduler(scheduler_url()).task_list("", ""), days) == {}

    # A rerun finds the range complete in one query, and schedules nothing.
    rerun = _Builds(monkeypatch)
    code, reports, out = _backfill(days)
    assert code == 0, out
    assert rerun.days == [] and [r["status"] for r in reports] == ["COMPLETE"] * 7


def test_a_failed_day_does_not_stop_the_next_windows(s2_bucket, settings_env, monkeypatch, smtp):
    settings_env.setenv("RF_BACKFILL_TASKS", str(BOUND))
    days = _days(4)
    for day in days:
        mirror.put_day(s2_bucket, day, ["DP"])
    broken = mirror.tile_info(days[0], "DP")
    del broken["tileGeometry"]
    mirror.put_json(s2_bucket, f"{mirror.tile_path(days[0], 'DP')}/tileInfo.json", broken)
    builds = _Builds(monkeypatch)
    code, reports, out = _backfill(days)
    assert code == 3, out
    assert [r["status"] for r in reports] == ["PARTIAL"] + ["COMPLETE"] * 6
    assert len(builds.days) == 6  # every window ran
    errors = [line for line in out.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and f"day={days[0]}" in errors[0], out
    [message] = smtp.messages  # one notification for the whole backfill
    assert f"backfill sentinel2 {days[0]}..{days[-1]}: 1 task(s) failed" in message
    assert "visualiser: " in message  # each failure links to luigid, as for one build
    # luigid forgot the finished tasks, and kept the failed day's for that link.
    held = _ours(RemoteScheduler(scheduler_url()).task_list("", ""), days).values()
    assert {t["params"]["day"] for t in held} == {str(days[0])}
    assert "FAILED" in {t["status"] for t in held}

    # Fixed, the rerun schedules the failed day alone: complete windows are skipped.
    mirror.put_day(s2_bucket, days[0], ["DP"])
    rerun = _Builds(monkeypatch)
    code, reports, out = _backfill(days)
    assert code == 0, out
    assert rerun.days == [[days[0]], [days[0]]]
    assert [r["status"] for r in reports] == ["COMPLETE"] * 7


def _assert_stopped_after_the_first_window(builds, days, code, reports, out, exit_code):
    assert code == exit_code, out
    assert builds.days == [days[0:3], days[0:3], days[3:6]]  # the third window never ran
    assert [r.get("status") for r in reports] == ["COMPLETE"] * 3 + [None] * 4
    errors = [line for line in out.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 3 and all("DiscoverDay(" in line for line in errors), out
    return errors


def test_a_store_away_stops_the_remaining_windows(
    s2_bucket, settings_env, monkeypatch, local_services, luigi_config
):
    """Transient: the next windows would meet it too; the same command, later, goes on."""
    from bench.proxy import Proxy

    settings_env.setenv("RF_BACKFILL_TASKS", str(BOUND))
    days = _days(5)
    for day in days:
        mirror.put_day(s2_bucket, day, ["DP"])
    luigi_config("rf_retries", "default", "2:0.1")
    host, port = local_services["AWS_ENDPOINT_URL_S3"].rsplit("/", 1)[-1].rsplit(":", 1)
    with Proxy(host, port) as proxy:
        settings_env.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
        config.settings.cache_clear()
        clients.reset()

        def before(number):
            if number == 3:  # the second window's discovery: the store stops answering
                proxy.mode = "refuse"

        builds = _Builds(monkeypatch, before)
        code, reports, out = _backfill(days)
    _assert_stopped_after_the_first_window(builds, days, code, reports, out, 75)


def test_a_bad_setting_stops_the_remaining_windows(s2_bucket, settings_env, monkeypatch):
    settings_env.setenv("RF_BACKFILL_TASKS", str(BOUND))
    days = _days(7)
    for day in days:
        mirror.put_day(s2_bucket, day, ["DP"])

    def before(number):
        if number == 3:  # the second window: the mirror's root names a bucket the store lacks
            settings_env.setenv("RF_SENTINEL2_ROOT", "s3://rf-no-such-bucket/s2")
            config.settings.cache_clear()

    builds = _Builds(monkeypatch, before)
    code, reports, out = _backfill(days)
    errors = _assert_stopped_after_the_first_window(builds, days, code, reports, out, 2)
    assert all("rf-no-such-bucket" in line for line in errors), out


def test_luigid_away_stops_the_remaining_windows(s2_bucket, settings_env, monkeypatch):
    settings_env.setenv("RF_BACKFILL_TASKS", str(BOUND))
    days = _days(8)
    for day in days:
        mirror.put_day(s2_bucket, day, ["DP"])
    with socket.socket() as nobody:  # bound, never listening: connections are refused
        nobody.bind(("127.0.0.1", 0))
        away = f"http://127.0.0.1:{nobody.getsockname()[1]}"

        def before(number):
            if number == 3:  # luigid stops answering before the second window
                settings_env.setenv("RF_SCHEDULER_URL", away)

        builds = _Builds(monkeypatch, before)
        code, reports, out = _backfill(days)
    assert code == 75, out
    assert builds.days == [days[0:3], days[0:3], days[3:6]]
    assert [r.get("status") for r in reports] == ["COMPLETE"] * 3 + [None] * 4
    errors = [line for line in out.splitlines() if line.startswith("Error: ")]
    assert errors == [
        f"Error: luigid at {away} does not answer; start it (rf-pipelines services start, or "
        "rf-pipelines scheduler) or run in-process with --local-scheduler (retry later)"
    ]


@pytest.mark.parametrize("bound", ["0", "many"])
def test_a_bad_bound_is_refused(s2_bucket, settings_env, bound):
    settings_env.setenv("RF_BACKFILL_TASKS", bound)
    code, _, out = _backfill(_days(6))
    assert code == 2 and f"RF_BACKFILL_TASKS: '{bound}' is not a positive integer" in out


def test_luigid_forgets_no_finished_task_another_run_still_needs():
    """Two backfills of one range (or one shared by two hosts): a run forgets its
    DiscoverDay while the other run's ImportDay, pending, depends on it. luigid hands out a
    task only when each dependency is there and DONE: forgotten, the other run would wait
    for ever."""
    from luigi.scheduler import DONE, PENDING

    from rf_pipelines.scheduler import RfScheduler

    scheduler = RfScheduler()
    scheduler.add_task(worker="other", task_id="DiscoverDay_d", status=DONE)
    scheduler.add_task(
        worker="other", task_id="ImportDay_d", status=PENDING, deps=["DiscoverDay_d"]
    )
    scheduler.add_task(worker="this", task_id="DiscoverDay_e", status=DONE)
    assert scheduler.forget_done(["DiscoverDay_d", "DiscoverDay_e"]) == 1
    assert scheduler.get_work(worker="other")["task_id"] == "ImportDay_d"
