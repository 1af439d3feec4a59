"""Local services: idempotent start, status, env lines, and stop that leaves no process."""

import os

from click.testing import CliRunner

from rf_pipelines import config, services
from rf_pipelines.cli import cli
from tests.conftest import HOME


def test_all_services_answer_on_loopback(local_services):
    states = services.status(HOME)[: len(services.NAMES)]  # then spark, when started
    assert [s.name for s in states] == list(services.NAMES)
    assert all(s.running for s in states), states
    assert all("127.0.0.1" in s.url for s in states)


def test_start_again_keeps_the_running_processes(local_services):
    before = {s.name: s.pid for s in services.status(HOME)}
    services.start(HOME)
    assert {s.name: s.pid for s in services.status(HOME)} == before


def test_env_prints_export_lines(local_services, settings_env):
    settings_env.setenv("RF_HOME", str(HOME))
    result = CliRunner().invoke(cli, ["services", "env"])
    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert all(line.startswith("export ") for line in lines)
    ports = config.local_ports()
    assert f"export AWS_ENDPOINT_URL_S3=http://127.0.0.1:{ports['s3']}" in lines
    assert f"export RF_SCHEDULER_URL=http://127.0.0.1:{ports['luigid']}" in lines
    assert f"export RF_PORT_BASE={os.environ['RF_PORT_BASE']}" in lines


def test_stop_leaves_no_process_behind_and_start_brings_it_back(local_services):
    (moto,) = [s for s in services.status(HOME) if s.name == "moto"]
    children = _children(moto.pid)
    services.stop(HOME, ["moto"])
    assert not services.pid_alive(moto.pid)
    assert not any(services.pid_alive(pid) for pid in children)
    services.start(HOME, ["moto"])
    (again,) = [s for s in services.status(HOME) if s.name == "moto"]
    assert again.running and again.pid != moto.pid


def _children(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(") ", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except OSError:
                continue
    return found


def test_stop_leaves_alone_a_process_that_a_stale_pid_file_names(tmp_path):
    """After a reboot a pid file may name an unrelated process: stop must not kill it."""
    import subprocess

    other = subprocess.Popen(["sleep", "60"], cwd=tmp_path, start_new_session=True)
    try:
        for folder in ("postgres/data", "moto"):
            path = tmp_path / "services" / folder
            path.mkdir(parents=True)
        (tmp_path / "services/postgres/data/postmaster.pid").write_text(f"{other.pid}\n")
        (tmp_path / "services/moto/pid").write_text(str(other.pid))
        services.stop(tmp_path)
        assert other.poll() is None, "an unrelated process was stopped"
        assert not (tmp_path / "services/moto/pid").exists()  # the stale file is gone
    finally:
        other.kill()
        other.wait()
