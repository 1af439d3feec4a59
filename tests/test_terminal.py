"""What a person at a terminal sees: one line per failure with its log, the README's exit codes,
no tracebacks, warnings or luigi summaries unless --verbose, outputs other users can read.

Each command runs as its own process, as a user would run it, against the suite's services.
"""

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests import rasters

UNKNOWN_UUID = "9d3c5c0e-7f59-4f0e-9a3e-0b2ffc1b6a11"


@pytest.fixture()
def local_root(tmp_path, database_url, monkeypatch):
    """A local data root and this test's database, in the environment commands inherit."""
    monkeypatch.setenv("RF_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("RF_DATABASE_URL", database_url)
    return tmp_path / "data"


def command(*args, env=None, timeout=300):
    """Runs ``rf-pipelines ARGS`` under umask 022; returns the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "rf_pipelines.cli", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        umask=0o022,
    )


def error_lines(proc):
    return [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]


def assert_quiet(proc):
    """Nothing but results, progress and errors: luigi's logging stays in the logs."""
    both = proc.stdout + proc.stderr
    for noise in ("Traceback", "Warning", "DEBUG", " INFO ", "Execution Summary", "===="):
        assert noise not in both, f"{noise!r} reached the terminal:\n{both[-3000:]}"


def logged_path(line):
    """The log a one-line error points at."""
    return Path(line.rsplit("(log: ", 1)[1].rstrip(")"))


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_text_file_named_tif_fails_its_step_in_one_line(local_root, tmp_path):
    bad = tmp_path / "notes.tif"
    bad.write_text("field notes, not a raster\n" * 20)
    created = command("upload", "create", str(bad))
    assert created.returncode == 0, created.stderr
    upload_id = created.stdout.strip()

    proc = command("upload", "process", upload_id)

    assert proc.returncode == 3, proc.stderr
    assert_quiet(proc)
    [line] = error_lines(proc)
    assert line.startswith("Error: ValidateUploadFile(")
    assert "filename=notes.tif" in line and "InvalidInput: notes.tif:" in line
    # The traceback is in the step's log, which the line names.
    log = logged_path(line)
    assert log.is_file() and "Traceback" in log.read_text()
    assert json.loads(proc.stdout)["status"] == "FAILED"


def test_an_unreachable_stac_api_is_transient_exit_75(local_root):
    api = f"http://127.0.0.1:{free_port()}"
    proc = command("import", "landsat", "--date", "2024-05-01", env={"RF_LANDSAT_STAC_URL": api})

    assert proc.returncode == 75, proc.stderr
    assert_quiet(proc)
    [line] = error_lines(proc)
    assert line.startswith("Error: DiscoverDay(") and "source=landsat" in line
    assert f"STAC API {api}" in line and "is unreachable" in line
    assert logged_path(line).is_file()
    [day] = [json.loads(text) for text in proc.stdout.splitlines()]
    assert day["day"] == "2024-05-01" and day.get("status") != "COMPLETE"


def test_the_public_sentinel2_bucket_looked_up_on_the_local_store_says_so(local_root):
    # The services' environment points S3 at the local store, which has no sentinel-s2-l1c.
    endpoint = os.environ["AWS_ENDPOINT_URL_S3"]
    proc = command("import", "sentinel2", "--date", "2024-05-01")

    assert proc.returncode == 2, proc.stderr
    assert_quiet(proc)
    [line] = error_lines(proc)
    assert "MissingBucket: RF_SENTINEL2_ROOT s3://sentinel-s2-l1c:" in line
    assert f"bucket 'sentinel-s2-l1c' does not exist on the S3 endpoint {endpoint}" in line


@pytest.mark.parametrize(
    ("upload_id", "reason"),
    [("nope", "upload id 'nope' is not a UUID"), (UNKNOWN_UUID, "does not exist")],
)
def test_run_with_a_bad_or_unknown_id_exits_2_in_one_line(local_root, upload_id, reason):
    proc = command("run", "ProcessUpload", "--upload-id", upload_id)

    assert proc.returncode == 2, proc.stderr
    assert_quiet(proc)
    [line] = error_lines(proc)
    assert line.startswith(f"Error: ProcessUpload(upload_id={upload_id}) failed: ")
    assert reason in line
    assert "Traceback" in logged_path(line).read_text()
    # The same id given to `upload process` is refused the same way.
    direct = command("upload", "process", upload_id)
    assert direct.returncode == 2 and reason in direct.stderr
    assert_quiet(direct)


def test_verbose_brings_back_tracebacks_and_luigis_logging(local_root):
    proc = command("run", "ProcessUpload", "--upload-id", "nope", "--verbose")

    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and "DEBUG" in proc.stderr
    assert error_lines(proc)[-1].startswith("Error: ProcessUpload(upload_id=nope) failed")


def test_a_good_upload_prints_its_result_only_and_outputs_are_readable(local_root):
    created = command("upload", "create", str(rasters.GEOTIFF / "byte.tif"))
    proc = command("upload", "process", created.stdout.strip())

    assert proc.returncode == 0, proc.stderr
    assert_quiet(proc)
    assert proc.stderr == ""
    assert json.loads(proc.stdout)["status"] == "COMPLETE"
    # Under umask 022 every output, GeoTIFFs included, is readable by a tile server.
    outputs = [p for p in local_root.rglob("*") if p.is_file()]
    assert any(p.suffix == ".tif" for p in outputs) and any(p.suffix == ".png" for p in outputs)
    modes = {str(p.relative_to(local_root)): oct(stat.S_IMODE(p.stat().st_mode)) for p in outputs}
    assert set(modes.values()) == {"0o644"}, modes


def test_the_demo_is_quiet_and_prints_its_links(local_root):
    proc = command("demo", str(rasters.GEOTIFF / "byte.tif"), "--no-ingest")

    assert proc.returncode == 0, proc.stderr
    assert_quiet(proc)
    luigid = os.environ["RF_SCHEDULER_URL"]
    assert f"visualiser: {luigid}/static/visualiser/index.html#tab=graph" in proc.stdout
    assert f"task history: {luigid}/history" in proc.stdout
    assert len(proc.stdout.splitlines()) < 40


def test_a_catalog_that_is_down_is_transient_exit_75(local_root, monkeypatch):
    port = free_port()
    down = f"postgresql://postgres@127.0.0.1:{port}/rf_pipelines"
    for args in (
        ("upload", "show", UNKNOWN_UUID),
        ("run", "ProcessUpload", "--upload-id", UNKNOWN_UUID),
    ):
        proc = command(*args, env={"RF_DATABASE_URL": down})
        assert proc.returncode == 75, (args, proc.stderr)
        assert_quiet(proc)
        [line] = error_lines(proc)
        assert f"127.0.0.1:{port}/rf_pipelines" in line, line


def test_bad_task_parameters_are_one_line_without_argparse_usage(local_root):
    proc = command("run", "ProcessUpload", "--bogus", "1")
    assert proc.returncode == 2
    assert_quiet(proc)
    assert "usage:" not in proc.stderr
    [line] = error_lines(proc)
    assert "unrecognized arguments: --bogus 1" in line and "--upload-id" in line


def test_an_object_store_that_is_down_outside_any_task_is_transient(local_root):
    down = f"http://127.0.0.1:{free_port()}"
    proc = command(
        "upload", "create", "s3://some-bucket/uploads/", env={"AWS_ENDPOINT_URL_S3": down}
    )
    assert proc.returncode == 75, proc.stderr
    assert_quiet(proc)
    [line] = error_lines(proc)
    assert "EndpointConnectionError" in line and "(retry later; log: " in line


def test_an_unwritable_home_still_gives_one_line(local_root, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "logs").write_text("a file where the log folder would go")
    proc = command("upload", "show", "nope", env={"RF_HOME": str(home)})
    assert proc.returncode == 2
    assert_quiet(proc)
    assert proc.stderr == "Error: upload id 'nope' is not a UUID\n"
    # An error logged with its traceback (ERROR level) still stays off the terminal.
    down = f"http://127.0.0.1:{free_port()}"
    proc = command(
        "upload",
        "create",
        "s3://some-bucket/uploads/",
        env={"RF_HOME": str(home), "AWS_ENDPOINT_URL_S3": down},
    )
    assert proc.returncode == 75
    assert_quiet(proc)
    [line] = proc.stderr.splitlines()
    assert line.startswith("Error: EndpointConnectionError") and "run with --verbose" in line


def test_no_config_key_goes_unconsumed():
    """luigi warns once per key it does not know; every key in luigi.cfg must be known."""
    check = (
        "import warnings, luigi.interface, luigi.parameter; import rf_pipelines.cli; "
        "warnings.simplefilter('error', luigi.parameter.UnconsumedParameterWarning); "
        "luigi.configuration.get_config().set('core', 'no_configure_logging', 'true'); "
        "luigi.interface.core()"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-1500:]


def test_luigis_own_help_flags_stay_off_the_terminal(local_root):
    proc = command("run", "ProcessUpload", "--help-all")
    assert proc.returncode == 2
    assert proc.stdout == "" and len(proc.stderr.splitlines()) == 1


def test_luigid_down_is_exit_75_never_a_silent_local_run(local_root, tmp_path):
    created = command("upload", "create", str(rasters.GEOTIFF / "byte.tif"))
    upload_id = created.stdout.strip()
    gone = f"http://127.0.0.1:{free_port()}"
    for args in (
        ("upload", "process", upload_id),
        ("run", "ProcessUpload", "--upload-id", upload_id),
    ):
        proc = command(*args, env={"RF_SCHEDULER_URL": gone})
        assert proc.returncode == 75, proc.stderr
        assert_quiet(proc)
        [line] = error_lines(proc)
        assert f"luigid at {gone} does not answer" in line and "--local-scheduler" in line
    shown = command("upload", "show", upload_id)
    assert json.loads(shown.stdout)["status"] == "UPLOADED"  # nothing ran

    # Asked for, the in-process scheduler runs it.
    proc = command(
        "upload", "process", upload_id, "--local-scheduler", env={"RF_SCHEDULER_URL": gone}
    )
    assert proc.returncode == 0, proc.stderr
    # So does a luigi.cfg that names it.
    cfg = tmp_path / "luigi.cfg"
    text = Path(os.environ["LUIGI_CONFIG_PATH"]).read_text()
    cfg.write_text(text.replace("[core]\n", "[core]\nlocal_scheduler = true\n", 1))
    again = command(
        "run",
        "ProcessUpload",
        "--upload-id",
        upload_id,
        env={"RF_SCHEDULER_URL": gone, "LUIGI_CONFIG_PATH": str(cfg)},
    )
    assert again.returncode == 0, again.stderr
