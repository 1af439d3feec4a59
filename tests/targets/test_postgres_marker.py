"""MarkerTarget: the marker commits with the step's data, or neither does."""

import uuid

import pytest

from rf_pipelines.catalog import datasources, db, rows
from rf_pipelines.targets import MarkerTarget


def _marker(database_url):
    return MarkerTarget(f"Step_{uuid.uuid4().hex}@v1", "Step", 1, {"x": "1"}, database_url)


def test_marker_and_data_commit_together(database_url):
    target = _marker(database_url)
    assert not target.exists()
    with target.transaction() as conn:
        datasources.upsert_datasource(conn, f"ds-{target.marker_id}", "tester")
    assert target.exists()
    with db.connect(database_url) as conn:
        assert rows.count(conn, "datasources", name=f"ds-{target.marker_id}") == 1


def test_failed_step_writes_neither_marker_nor_data(database_url):
    target = _marker(database_url)
    with pytest.raises(RuntimeError), target.transaction() as conn:
        datasources.upsert_datasource(conn, f"ds-{target.marker_id}", "tester")
        raise RuntimeError("step failed after writing")
    assert not target.exists()
    with db.connect(database_url) as conn:
        assert rows.count(conn, "datasources", name=f"ds-{target.marker_id}") == 0
