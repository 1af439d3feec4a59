"""Terminal progress: a bar on a TTY, periodic lines otherwise."""

import io
import time

from rf_pipelines.progress import watching


class _Stream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


def test_a_bar_on_a_tty_and_lines_elsewhere(monkeypatch):
    monkeypatch.setenv("RF_PROGRESS_INTERVAL", "0.05")
    done = iter(range(100))
    plain = _Stream(tty=False)
    with watching("backfill", 40, lambda: next(done), stream=plain):
        time.sleep(0.3)
    lines = plain.getvalue().splitlines()
    assert len(lines) >= 3 and all(line.startswith("backfill: ") for line in lines)
    assert lines[0].startswith("backfill: 0/40 (0%)")

    tty = _Stream(tty=True)
    with watching("upload", 4, lambda: 2, stream=tty):
        pass
    assert tty.getvalue() == "\rupload [###############...............] 2/4 0s\n"


def test_one_item_shows_nothing():
    stream = _Stream(tty=False)
    with watching("x", 1, lambda: 1, stream=stream):
        pass
    assert stream.getvalue() == ""


def test_a_bad_interval_is_a_setting_error(monkeypatch):
    import pytest

    from rf_pipelines.errors import ConfigError

    for value in ("abc", "0", "-3"):
        monkeypatch.setenv("RF_PROGRESS_INTERVAL", value)
        with pytest.raises(ConfigError, match=f"RF_PROGRESS_INTERVAL: '{value}' is not a positive"):
            with watching("x", 5, lambda: 0, stream=_Stream(tty=False)):
                pass
