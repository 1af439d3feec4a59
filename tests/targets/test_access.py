"""Requester-pays and unsigned reads, per URL prefix, checked on the wire: the requests of
both readers (boto3 and obstore) pass through a proxy (bench/proxy.py) that keeps their
heads."""

import uuid

import pytest

from rf_pipelines import config
from rf_pipelines.errors import ConfigError
from rf_pipelines.targets import access, files, reading


def test_defaults_for_the_public_buckets_and_overrides(settings_env):
    assert access.mode_for("s3://sentinel-s2-l1c/tiles/1/tileInfo.json") == "requester-pays"
    assert access.mode_for("s3://usgs-landsat/collection02/x_MTL.json") == "requester-pays"
    assert access.mode_for("s3://sentinel-cogs/sentinel-s2-l2a-cogs/x.tif") == "unsigned"
    assert access.mode_for("s3://my-bucket/x") == "signed"
    settings_env.setenv("RF_S3_ACCESS", "s3://usgs-landsat=signed, s3://my-bucket/open=unsigned")
    config.settings.cache_clear()
    assert access.mode_for("s3://usgs-landsat/collection02/x_MTL.json") == "signed"
    assert access.mode_for("s3://my-bucket/open/x") == "unsigned"
    assert access.mode_for("s3://my-bucket/other/x") == "signed"


@pytest.mark.parametrize(
    "value", ["s3://b=paid", "b=unsigned", "s3://b", "s3://b=requester-pays,oops"]
)
def test_a_bad_access_setting_is_refused_by_name(settings_env, value):
    settings_env.setenv("RF_S3_ACCESS", value)
    with pytest.raises(ConfigError, match="RF_S3_ACCESS.*s3://PREFIX=MODE"):
        config.load_settings()


@pytest.fixture()
def wire(s3_bucket, local_services, settings_env):
    """Three prefixes of one bucket, one per mode, read through a proxy that keeps heads."""
    from bench.proxy import Proxy

    root = f"s3://{s3_bucket}/access-{uuid.uuid4().hex[:8]}"
    for mode in access.MODES:
        files.write_bytes(f"{root}/{mode}/tile/a.json", mode.encode())
    host, port = local_services["AWS_ENDPOINT_URL_S3"].rsplit("/", 1)[-1].rsplit(":", 1)
    with Proxy(host, port) as proxy:
        settings_env.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
        settings_env.setenv(
            "RF_S3_ACCESS", ",".join(f"{root}/{mode}={mode}" for mode in access.MODES)
        )
        from rf_pipelines import clients

        clients.reset()
        config.settings.cache_clear()
        yield root, proxy


def _heads(proxy, since):
    return [head.lower() for head in list(proxy.heads)[since:]]


@pytest.mark.parametrize("mode", access.MODES)
def test_each_reader_sends_what_its_prefix_says(wire, mode):
    root, proxy = wire
    url = f"{root}/{mode}/tile/a.json"
    reads = {
        "boto3 get": lambda: files.read_bytes(url),
        "boto3 list": lambda: files.list_folders(f"{root}/{mode}"),
        "boto3 download": lambda: _staged(url),
        "obstore get": lambda: reading._obstore_read(url),
    }
    for name, read in reads.items():
        since = len(proxy.heads)
        result = read()
        assert result in (mode.encode(), ["tile"]), name
        heads = _heads(proxy, since)
        assert heads, f"{name}: no request went through the proxy"
        for head in heads:
            pays = "x-amz-request-payer: requester" in head
            signed = "\nauthorization:" in head
            assert pays == (mode == "requester-pays"), f"{name}: {head}"
            assert signed == (mode != "unsigned"), f"{name}: {head}"


def _staged(url):
    with files.staged(url) as local, open(local, "rb") as src:
        return src.read()
