"""Creating uploads: copies, records, and what is refused before anything is written."""

import pytest

from rf_pipelines import clients, config, uploading
from rf_pipelines.catalog import db, rows, uploads
from rf_pipelines.errors import InvalidInput
from rf_pipelines.targets import existing, target_for
from tests import rasters


@pytest.mark.parametrize(
    "name", ["", ".", "..", "../x.tif", "/etc/passwd", "a\\b.tif", ".hidden.tif", "a\x00.tif"]
)
def test_untrusted_names_are_refused(name):
    with pytest.raises(InvalidInput, match="is not a plain file name"):
        uploading.check_filename(name)


def test_paths_never_leave_the_upload_folder(data_root):
    with pytest.raises(InvalidInput):
        uploading.upload_url("8b9c1f0e-1c1e-4a39-9d53-3f2ab4a3f1c2", "../../etc/passwd")


def test_create_copies_files_and_records_uploaded(data_root, database_url, tmp_path):
    good = rasters.utm_tif(tmp_path / "one.tif")
    nested = tmp_path / "sub"
    nested.mkdir()
    rasters.utm_tif(nested / "two.TIFF")
    (nested / "readme.txt").write_text("ignored: not a TIFF")
    upload_id = uploading.create_upload(
        [str(good), str(nested) + "/../sub"], "alice", project="Field survey"
    )
    with db.connect(database_url) as conn:
        upload = uploads.get_upload(conn, upload_id)
        names = [f["filename"] for f in uploads.list_files(conn, upload_id)]
    assert upload["upload_status"] == "UPLOADED" and upload["owner"] == "alice"
    assert upload["project_id"] is not None
    assert names == ["one.tif", "two.TIFF"]
    urls = [uploading.upload_url(upload_id, n) for n in names]
    assert existing(urls) == set(urls)
    with target_for(urls[0]).open("r") as copied:
        assert copied.read() == good.read_bytes()


def test_create_from_an_s3_prefix_takes_only_tiffs(data_root, database_url, s3_bucket, tmp_path):
    s3 = clients.aws_client("s3", config.settings().s3_endpoint_url)
    body = rasters.utm_tif(tmp_path / "a.tif").read_bytes()
    for key in ("drop/x/a.tif", "drop/b.tiff", "drop/notes.txt"):
        s3.put_object(Bucket=s3_bucket, Key=key, Body=body)
    upload_id = uploading.create_upload([f"s3://{s3_bucket}/drop/"], "bob")
    with db.connect(database_url) as conn:
        files = uploads.list_files(conn, upload_id)
        upload = uploads.get_upload(conn, upload_id)
    assert [f["filename"] for f in files] == ["a.tif", "b.tiff"]
    assert upload["upload_type"] == "S3"


def _upload_count(database_url):
    with db.connect(database_url) as conn:
        return rows.count(conn, "uploads")


def test_s3_prefix_without_tiffs_is_refused(data_root, database_url, s3_bucket):
    s3 = clients.aws_client("s3", config.settings().s3_endpoint_url)
    s3.put_object(Bucket=s3_bucket, Key="empty/notes.txt", Body=b"no imagery here")
    with pytest.raises(InvalidInput, match="no .tif or .tiff files under this prefix"):
        uploading.create_upload([f"s3://{s3_bucket}/empty/"], "bob")
    assert _upload_count(database_url) == 0


def test_duplicate_names_are_refused(data_root, database_url, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = rasters.utm_tif(tmp_path / "a" / "scene.tif")
    second = rasters.utm_tif(tmp_path / "b" / "scene.tif")
    with pytest.raises(InvalidInput, match="two files are named 'scene.tif'"):
        uploading.create_upload([str(first), str(second)], "carol")
    assert _upload_count(database_url) == 0


def test_missing_source_is_refused(data_root, database_url, tmp_path):
    with pytest.raises(InvalidInput, match="no such file, folder or s3:// prefix"):
        uploading.create_upload([str(tmp_path / "nope.tif")], "carol")
