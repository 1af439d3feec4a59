"""Published files get the mode the umask allows, like any file a program writes."""

import os
import stat

import pytest

from rf_pipelines.targets import files


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_written_and_copied_files_follow_the_umask(tmp_path, umask, mode):
    source = tmp_path / "source.bin"
    source.write_bytes(b"x" * 10)
    old = os.umask(umask)
    try:
        with files.writing(str(tmp_path / "out" / "written.tif")) as local:
            with open(local, "wb") as out:
                out.write(b"GeoTIFF bytes")
        files.copy_into(str(source), str(tmp_path / "out" / "copied.tif"))
    finally:
        os.umask(old)
    for name in ("written.tif", "copied.tif"):
        assert stat.S_IMODE((tmp_path / "out" / name).stat().st_mode) == mode, name
