"""benchmark/progress.py: ``progress=on`` draws bars, ``off`` never does, ``auto`` only on a terminal;
any other value is rejected, and a bar is closed even when the loop fails."""

from __future__ import annotations

import sys

import pytest
from tqdm import tqdm

from medprivbench.benchmark import progress
from medprivbench.benchmark.errors import ConfigError


class Terminal:
    """A stand-in for sys.stderr that says whether it is a terminal and keeps what is written."""

    def __init__(self, tty: bool):
        self.tty, self.text = tty, []

    def isatty(self) -> bool:
        return self.tty

    def write(self, s: str) -> int:
        self.text.append(s)
        return len(s)

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("tty", [True, False])
def test_on_and_off_ignore_the_terminal_and_auto_follows_it(monkeypatch, tty):
    monkeypatch.setattr(sys, "stderr", Terminal(tty))
    assert progress.enabled("on") is True
    assert progress.enabled("off") is False
    assert progress.enabled("auto") is tty


@pytest.mark.parametrize("mode", ["yes", "ON", "", True])
def test_other_modes_are_rejected_with_the_valid_ones(mode):
    with pytest.raises(ConfigError, match=r"progress=.* is not valid; choose one of auto, on, off"):
        progress.enabled(mode)
    with pytest.raises(ConfigError):
        with progress.epoch_bar(mode, "x"):
            pass
    with pytest.raises(ConfigError):
        progress.item_bar(mode, [1], "x")


@pytest.mark.parametrize("mode, tty", [("off", True), ("auto", False)])
def test_no_bar_means_no_callback_and_no_output(monkeypatch, mode, tty):
    terminal = Terminal(tty)
    monkeypatch.setattr(sys, "stderr", terminal)
    with progress.epoch_bar(mode, "epochs") as bar:
        assert bar is None
    with progress.count_bar(mode, "models", total=3) as bar:
        assert bar is None
    items = [1, 2, 3]
    assert progress.item_bar(mode, items, "items") is items  # the iterable itself, unwrapped
    assert terminal.text == []


def test_epoch_bar_shows_epochs_and_the_loss(monkeypatch):
    terminal = Terminal(True)
    monkeypatch.setattr(sys, "stderr", terminal)
    with progress.epoch_bar("auto", "[run] epochs") as update:
        assert callable(update)
        update(1, 3, 0.75)
        update(3, 3, 0.125)
    text = "".join(terminal.text)
    assert "[run] epochs" in text and "1/3" in text and "3/3" in text
    assert "loss=0.7500" in text and "loss=0.1250" in text


def test_count_bar_shows_done_of_total_in_its_unit(monkeypatch):
    terminal = Terminal(False)
    monkeypatch.setattr(sys, "stderr", terminal)
    with progress.count_bar("on", "shadow models", total=4, unit="model") as update:
        update(2, 4)
    text = "".join(terminal.text)
    assert "shadow models" in text and "2/4" in text and "model" in text


def test_item_bar_yields_the_same_items(monkeypatch):
    terminal = Terminal(False)
    monkeypatch.setattr(sys, "stderr", terminal)
    wrapped = progress.item_bar("on", iter("abc"), "letters", total=3)
    assert isinstance(wrapped, tqdm)
    assert list(wrapped) == ["a", "b", "c"]
    text = "".join(terminal.text)
    assert "letters" in text and "0/3" in text  # drawn with its total (later redraws are rate-limited)


def test_a_bar_is_closed_when_the_loop_fails(monkeypatch):
    monkeypatch.setattr(sys, "stderr", Terminal(True))
    before = len(tqdm._instances)
    with pytest.raises(RuntimeError, match="diverged"):
        with progress.epoch_bar("on", "epochs") as update:
            update(1, 2, 1.0)
            assert len(tqdm._instances) == before + 1
            raise RuntimeError("diverged")
    assert len(tqdm._instances) == before
    with pytest.raises(KeyError):
        with progress.count_bar("on", "models", total=2):
            raise KeyError("boom")
    assert len(tqdm._instances) == before
