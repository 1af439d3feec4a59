"""Task logs served by luigid: the tracking link of a failed task opens its log, followed in a
real browser (Debian's headless Chromium) as a person would; the route's own answers."""

import os
import shutil
import urllib.error
import urllib.request
import uuid

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from rf_pipelines import config, uploading
from rf_pipelines.errors import BuildFailed
from rf_pipelines.tasks import ProcessUpload
from rf_pipelines.tasks.runner import build
from tests.conftest import HOME

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture()
def served_root(database_url, monkeypatch, local_services):
    """The data root the suite's luigid serves logs from (its home's default)."""
    monkeypatch.setenv("RF_DATA_ROOT", str(HOME / "data"))
    monkeypatch.setenv("RF_DATABASE_URL", database_url)
    config.settings.cache_clear()
    yield HOME / "data"
    config.settings.cache_clear()


@pytest.fixture()
def browser(tmp_path):
    """Headless Chromium from Debian's packages (scripts/setup installs it)."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium'}",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


def _failed_upload(folder, name):
    bad = folder / name
    bad.write_text("a spreadsheet export, not a raster\n" * 10)
    upload_id = str(uploading.create_upload([str(bad)], "browser"))
    with pytest.raises(BuildFailed):
        build([ProcessUpload(upload_id=upload_id)], local_scheduler=False)
    return upload_id


def test_a_failed_tasks_tracking_link_opens_its_log(served_root, tmp_path, browser):
    name = f"export-{uuid.uuid4().hex[:8]}.tif"
    upload_id = _failed_upload(tmp_path, name)
    luigid = config.scheduler_url()

    # The visualiser's task list, searched for the upload as a person would type it.
    browser.get(f"{luigid}/static/visualiser/index.html#tab=tasks&search__search={upload_id}")
    wait = WebDriverWait(browser, 30)
    link = wait.until(
        lambda d: next(
            (
                a
                for a in d.find_elements(By.CSS_SELECTOR, "a[href*='/logs/']")
                if "UploadBatch" in a.get_attribute("href") and a.is_displayed()
            ),
            None,
        )
    )
    assert link.get_attribute("href").startswith(f"{luigid}/logs/")
    browser.save_screenshot(str(tmp_path / "visualiser.png"))
    link.click()
    wait.until(lambda d: len(d.window_handles) == 2)  # the link opens a new tab
    browser.switch_to.window(browser.window_handles[1])
    text = wait.until(lambda d: d.find_element(By.TAG_NAME, "body").text or None)

    assert "running UploadBatch" in text
    assert f"{name} (upload {upload_id}) failed in ValidateUploadFile" in text
    assert "Traceback" in text and f"InvalidInput: {name}:" in text


def test_the_log_route_answers_404_for_a_missing_log_and_refuses_other_paths(served_root):
    luigid = config.scheduler_url()
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{luigid}/logs/2024-05-01/NoSuchTask_abc.log", timeout=10)
    assert missing.value.code == 404
    page = missing.value.read().decode()
    assert f"No log at {served_root}/logs/2024-05-01/NoSuchTask_abc.log" in page
    assert "published there when the task ends; a task still running" in page

    # Each ends in .log and climbs far enough that a naive route would leave the data root.
    climb = "/".join([".."] * 12)
    for path in (
        f"/logs/2024-05-01/{climb.replace('/', '%2F')}%2Fetc%2Fhostname.log",
        f"/logs/2024-05-01/{climb}/etc/hostname.log",
        f"/logs/{climb}/etc/hostname.log",
        "/logs/2024-05-01/.hidden.log",
    ):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(luigid + path, timeout=10)
        assert refused.value.code == 404, path
        assert b"No log at" not in refused.value.read(), path  # refused by the route itself


def test_luigid_keeps_finished_tasks_for_a_day(local_services):
    text = (HOME / "services" / "luigid" / "luigi.cfg").read_text()
    assert "remove_delay = 86400" in text
    assert os.environ["RF_SCHEDULER_URL"].startswith("http://127.0.0.1:")
