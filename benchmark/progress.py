"""Progress bars (tqdm) that stay quiet when output is not a terminal or when asked (progress=off)."""

from __future__ import annotations

import sys
from contextlib import contextmanager

from tqdm.auto import tqdm

from .errors import ConfigError

MODES = ("auto", "on", "off")


def enabled(mode: str) -> bool:
    if mode not in MODES:
        raise ConfigError(f"progress={mode!r} is not valid; choose one of {', '.join(MODES)}")
    if mode == "auto":
        return sys.stderr.isatty()
    return mode == "on"


@contextmanager
def epoch_bar(mode: str, desc: str):
    """A callback ``(epoch, epochs, loss)`` that advances a bar; a no-op when bars are off."""
    if not enabled(mode):
        yield None
        return
    bar = tqdm(desc=desc, unit="epoch", leave=False, dynamic_ncols=True)

    def update(epoch: int, epochs: int, loss: float) -> None:
        bar.total = epochs
        bar.n = epoch
        bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        bar.refresh()

    try:
        yield update
    finally:
        bar.close()


@contextmanager
def count_bar(mode: str, desc: str, total: int, unit: str = "it"):
    """A callback ``(done, total)`` for loops that report their own progress."""
    if not enabled(mode):
        yield None
        return
    bar = tqdm(desc=desc, total=total, unit=unit, leave=False, dynamic_ncols=True)

    def update(done: int, total_: int) -> None:
        bar.n = done
        bar.refresh()

    try:
        yield update
    finally:
        bar.close()


def item_bar(mode: str, iterable, desc: str, total: int | None = None, unit: str = "it"):
    """Wrap an iterable in a bar (shadow models, attack iterations …) when bars are on."""
    if not enabled(mode):
        return iterable
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, dynamic_ncols=True)
