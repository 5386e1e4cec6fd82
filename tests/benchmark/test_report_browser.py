"""The HTML report in a real browser: headless Chromium, driven through the DevTools protocol.

Chromium is started with ``--remote-debugging-pipe`` (DevTools messages over file descriptors
3 and 4, each a JSON object ending in a NUL byte), so no websocket library and no downloaded
browser are needed. The test fails on any console error, any image that did not decode
(naturalWidth 0) and any resource the page's Content-Security-Policy blocked; it saves a
screenshot of the whole page in its temporary folder.

Needs the Debian package ``chromium``; without it the test is skipped, unless
MEDPRIVBENCH_REQUIRE_BROWSER=1 (set by .ci/run), where a missing browser is a failure.
"""

from __future__ import annotations

import base64
import fcntl
import json
import math
import os
import select
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from medprivbench.benchmark import report

from .test_report import make_sweep

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-pipe")
TIMEOUT_S = 30.0


def chromium_binary() -> str:
    found = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if found is None:
        if os.environ.get("MEDPRIVBENCH_REQUIRE_BROWSER") == "1":
            pytest.fail("no chromium binary on PATH, but MEDPRIVBENCH_REQUIRE_BROWSER=1 "
                        "(CI installs the Debian package chromium)")
        pytest.skip("no chromium binary on PATH (Debian: apt-get install chromium); the browser check runs in CI")
    return found


def _high_fd(fd: int) -> int:
    """A close-on-exec copy of ``fd`` numbered ≥ 10, so that moving the pipe ends to 3 and 4 cannot clash."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


@dataclass
class PageCheck:
    errors: list[str] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)
    screenshot: bytes = b""
    page_width: int = 0  # the document's scroll width at a 1280 px window
    headline_tables: list[dict] = field(default_factory=list)  # unfolded tables of the headline section: widths


class DevTools:
    """A minimal DevTools-protocol client over Chromium's debugging pipe."""

    def __init__(self, binary: str, profile: Path):
        to_browser_r, self._to_browser = (_high_fd(fd) for fd in os.pipe())
        self._from_browser, from_browser_w = (_high_fd(fd) for fd in os.pipe())

        def pipe_ends_to_3_and_4() -> None:  # in the child, before exec: Chromium reads fd 3, writes fd 4
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"], preexec_fn=pipe_ends_to_3_and_4,
            pass_fds=(3, 4), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def close(self) -> None:
        try:
            self.send("Browser.close")
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            os.close(self._to_browser)
            os.close(self._from_browser)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        return self._next_id

    def _receive(self, deadline: float) -> dict | None:
        while b"\0" not in self._buffer:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([self._from_browser], [], [], wait)[0]:
                return None
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError(f"chromium closed the DevTools pipe (exit code {self.proc.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        wanted = self.send(method, params, session)
        deadline = time.monotonic() + TIMEOUT_S
        while (message := self._receive(deadline)) is not None:
            if message.get("id") == wanted:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)
        raise TimeoutError(f"no answer to {method} within {TIMEOUT_S:.0f} s")

    def wait_for(self, method: str, session: str) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        if any(e.get("method") == method and e.get("sessionId") == session for e in self.events):
            return
        while (message := self._receive(deadline)) is not None:
            self.events.append(message)
            if message.get("method") == method and message.get("sessionId") == session:
                return
        raise TimeoutError(f"no {method} within {TIMEOUT_S:.0f} s")

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (message := self._receive(deadline)) is not None:
            self.events.append(message)

    def check_page(self, url: str) -> PageCheck:
        """Load ``url`` in a new tab; collect console errors, image states and a full-page screenshot."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=session)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session)
        self.call("Page.navigate", {"url": url}, session)
        self.wait_for("Page.loadEventFired", session)
        self.drain(0.5)  # late console messages
        images = self.call("Runtime.evaluate", {
            "expression": "JSON.stringify(Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, "
                          "width: i.naturalWidth})))",
            "returnByValue": True}, session)["result"]["value"]
        layout = self.call("Runtime.evaluate", {"expression": HEADLINE_LAYOUT, "returnByValue": True}, session)
        layout = json.loads(layout["result"]["value"])
        size = self.call("Page.getLayoutMetrics", session=session)["cssContentSize"]
        shot = self.call("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 16000), "scale": 1}}, session)
        self.call("Target.closeTarget", {"targetId": target})
        return PageCheck(errors=page_errors(self.events, session), images=json.loads(images),
                         screenshot=base64.b64decode(shot["data"]), page_width=layout["page"],
                         headline_tables=layout["tables"])


# The page's width, and each table shown unfolded between the 'Headline table' heading and the next
# section: the width it needs (scrollWidth) against the width it has (clientWidth of its scroll box).
HEADLINE_LAYOUT = """JSON.stringify((() => {
  const h2 = Array.from(document.querySelectorAll('h2')).find(h => h.textContent === 'Headline table');
  const tables = [];
  for (let e = h2 ? h2.nextElementSibling : null; e && e.tagName !== 'H2'; e = e.nextElementSibling) {
    if (e.classList.contains('scroll')) {
      tables.push({header: e.querySelector('th').textContent, needs: e.scrollWidth, has: e.clientWidth,
                   columns: e.querySelectorAll('th').length});
    }
  }
  return {page: document.documentElement.scrollWidth, tables: tables};
})())"""


def page_errors(events: list[dict], session: str) -> list[str]:
    """Console errors, uncaught exceptions and browser log errors (failed loads, CSP violations) of one tab."""
    errors = []
    for e in events:
        if e.get("sessionId") != session:
            continue
        params = e.get("params", {})
        if e.get("method") == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif e.get("method") == "Runtime.exceptionThrown":
            errors.append("exception: " + params.get("exceptionDetails", {}).get("text", ""))
        elif e.get("method") == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            errors.append(f"log: {params['entry'].get('text', '')} {params['entry'].get('url', '')}")
    return errors


@pytest.fixture
def browser(tmp_path):
    devtools = DevTools(chromium_binary(), tmp_path / "chromium-profile")
    try:
        yield devtools
    finally:
        devtools.close()


def test_report_renders_in_chromium_without_errors(tmp_path, browser):
    sweep = make_sweep(tmp_path / "fake-cnn", budgets=(1.0, 8.0, math.inf), seeds=(0,))
    html_path = report.build_report([sweep])[0]
    checked = browser.check_page(html_path.resolve().as_uri())
    (tmp_path / "report-screenshot.png").write_bytes(checked.screenshot)
    assert checked.errors == []
    figures = [p for p in (sweep / "figures").glob("*.png")]
    assert len(checked.images) == len(figures) > 0
    broken = [i["alt"] for i in checked.images if not i["complete"] or i["width"] == 0]
    assert broken == []
    assert checked.screenshot.startswith(b"\x89PNG") and len(checked.screenshot) > 10_000


def test_the_headline_tables_fit_a_1280_pixel_window(tmp_path, browser):
    """Every unfolded table of the headline (verdicts, utility) needs no horizontal scrolling at 1280 px,
    on a sweep with every attack family, both non-private references and two seeds (± cells)."""
    sweep = make_sweep(tmp_path / "fake-cnn", budgets=(1.0, 8.0, 1e6, math.inf), seeds=(0, 1),
                       references=("same_recipe", "tuned"))
    checked = browser.check_page(report.build_report([sweep])[0].resolve().as_uri())
    (tmp_path / "report-screenshot.png").write_bytes(checked.screenshot)
    assert checked.page_width <= 1280
    assert [t["columns"] for t in checked.headline_tables] == [6, 9]  # verdicts, utility; the rest is folded
    too_wide = [t for t in checked.headline_tables if t["needs"] > t["has"]]
    assert too_wide == []


def test_the_browser_check_catches_broken_pages(tmp_path, browser):
    """The check itself: a missing image and a script error must both be reported."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><img src='missing.png' alt='gone'>"
                    "<h2>Headline table</h2><div class='scroll' style='overflow-x:auto;width:300px'><table><tr>"
                    "<th>wide</th><td style='min-width:2000px'>x</td></tr></table></div>"
                    "<script>console.error('boom'); undefinedFunction();</script></body></html>")
    checked = browser.check_page(page.as_uri())
    assert [t["needs"] > t["has"] for t in checked.headline_tables] == [True]  # the width check sees overflow
    assert any("boom" in e for e in checked.errors)
    assert any(e.startswith("exception") for e in checked.errors)
    assert any("missing.png" in e for e in checked.errors)
    assert [i["width"] for i in checked.images] == [0]
