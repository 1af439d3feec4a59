"""The contract every file-target backend passes: local folder and S3 (the local object store)."""

import subprocess
import sys
import textwrap

import luigi
from luigi.contrib.s3 import S3Target

from rf_pipelines import clients, config
from rf_pipelines.targets import existing, join, target_for


def test_target_for_picks_the_backend_by_url(data_root):
    target = target_for(join(data_root, "a.bin"))
    expected = S3Target if data_root.startswith("s3://") else luigi.LocalTarget
    assert type(target) is expected


def test_write_then_read_round_trips_bytes(data_root):
    target = target_for(join(data_root, "folder", "blob.bin"))
    payload = bytes(range(256)) * 1000
    assert not target.exists()
    with target.open("w") as out:
        out.write(payload)
    assert target.exists()
    with target.open("r") as src:
        assert src.read() == payload


def test_text_mode_round_trips(data_root):
    target = target_for(join(data_root, "note.txt"), binary=False)
    with target.open("w") as out:
        out.write("scène 1\n")
    with target.open("r") as src:
        assert src.read() == "scène 1\n"


def test_error_while_writing_leaves_nothing_at_the_final_path(data_root):
    url = join(data_root, "partial.bin")
    try:
        with target_for(url).open("w") as out:
            out.write(b"x" * 1024)
            raise RuntimeError("writer failed midway")
    except RuntimeError:
        pass
    assert not target_for(url).exists()
    assert existing([url]) == set()


def test_sigkill_midway_leaves_nothing_at_the_final_path(data_root):
    url = join(data_root, "killed.bin")
    writer = textwrap.dedent(
        f"""
        import sys, time
        from rf_pipelines.targets import target_for
        with target_for({url!r}).open("w") as out:
            out.write(b"y" * (4 << 20))
            out.flush()
            print("written", flush=True)
            time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "written"
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -9
    assert not target_for(url).exists()
    assert existing([url]) == set()


def test_bulk_existing_answers_exactly_which_exist(data_root):
    urls = [join(data_root, prefix, f"{i}.json") for prefix in ("a", "b") for i in range(25)]
    for url in urls[::2]:
        with target_for(url).open("w") as out:
            out.write(b"{}")
    missing_prefix = [join(data_root, "never", "x.json")]
    assert existing(urls + missing_prefix) == set(urls[::2])


def test_bulk_existing_lists_once_per_prefix(data_root):
    urls = [join(data_root, prefix, f"{i}.tif") for prefix in ("p1", "p2") for i in range(40)]
    for url in urls:
        with target_for(url).open("w") as out:
            out.write(b"")
    if not data_root.startswith("s3://"):
        assert existing(urls) == set(urls)
        return
    calls = []
    s3 = clients.aws_client("s3", config.settings().s3_endpoint_url)
    s3.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    assert existing(urls) == set(urls)
    assert calls == ["ListObjectsV2", "ListObjectsV2"]
