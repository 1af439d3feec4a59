"""What a non-editable install carries: everything a command reads at run time ships with the
package (the Docker image installs it the same way, without examples/ or tests/)."""

import json
import os
import shutil
import subprocess
import sys

from tests.conftest import REPO


def test_a_built_install_builds_the_demo_mirror_from_its_own_package_data(tmp_path):
    # A clean copy of the sources: a build/ folder left in the checkout could hide a file
    # that the package no longer declares.
    source = tmp_path / "source"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", ".rf-*", "build", "*.egg-info", "tests", "__pycache__"
        ),
    )
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
        + ["--target", str(site), str(source)],
        check=True,
        cwd=tmp_path,
        capture_output=True,
    )
    code = (
        "import json, sys; import rf_pipelines.mirror as m; "
        "assert m.__file__.startswith(sys.argv[1]), m.__file__; "
        "built = m.build_local(sys.argv[2]); "
        "print(json.dumps({'items': sum(len(json.load(open(f)).get('features', [1])) "
        "for f in built['item_files']), 'days': built['days']}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(site), str(tmp_path / "mirror")],
        env={**os.environ, "PYTHONPATH": str(site)},
        cwd=tmp_path,  # not the checkout: nothing may be found relative to it
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["items"] == 3  # two Landsat items made from the MTLs, one Earth Search item
    assert result["days"]["landsat"] == "2020-10-31"
    assert (tmp_path / "mirror" / "sentinel-s2-l1c" / "tiles/19/U/DP/2017/7/29/0").is_dir()
