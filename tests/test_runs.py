"""Run folders under RF_HOME/runs are kept RF_RUNS_KEEP_DAYS days, so that a long-running
listener (one run per message) does not fill the disk."""

import os
import time

import pytest

from rf_pipelines import config, runs
from rf_pipelines.errors import ConfigError


def _age(path, days):
    then = time.time() - days * 86400
    os.utime(path, (then, then))


def test_a_run_prunes_what_is_older_than_the_retention(settings_env, tmp_path):
    settings_env.setenv("RF_HOME", str(tmp_path))
    settings_env.setenv("RF_RUNS_KEEP_DAYS", "3")
    settings_env.setattr(runs, "_last_prune", {})
    folder = tmp_path / "runs"
    old, recent = folder / "20261101T000000-aaaaaaaa", folder / "20261127T000000-bbbbbbbb"
    for run in (old, recent):
        run.mkdir(parents=True)
        (run / "failures.jsonl").write_text("{}\n")
    (folder / "adhoc").mkdir()
    (folder / "adhoc" / "old.log").write_text("old")
    (folder / "adhoc" / "new.log").write_text("new")
    _age(old / "failures.jsonl", 4)
    _age(old, 4)
    _age(folder / "adhoc" / "old.log", 4)
    _age(recent, 5)  # an old folder, but a run still writes into it: kept

    current = runs.start()
    os.environ.pop(runs.ENV)
    assert sorted(p.name for p in folder.iterdir()) == sorted(["adhoc", recent.name, current.name])
    assert [p.name for p in (folder / "adhoc").iterdir()] == ["new.log"]

    # A long-running process prunes at most every PRUNE_EVERY_S, not at every run.
    _age(recent / "failures.jsonl", 4)
    runs.start()
    os.environ.pop(runs.ENV)
    assert recent.exists()
    settings_env.setattr(runs, "_last_prune", {})
    runs.start()
    os.environ.pop(runs.ENV)
    assert not recent.exists()


@pytest.mark.parametrize("value", ["0", "-1", "a week"])
def test_a_bad_retention_is_refused_by_name(settings_env, value):
    settings_env.setenv("RF_RUNS_KEEP_DAYS", value)
    with pytest.raises(ConfigError, match="RF_RUNS_KEEP_DAYS.*not a positive integer"):
        config.load_settings()
