"""The dashboard in a real browser during a real run: headless Chromium
(Debian's ``chromium``) loads the page from a standing server with agents,
and the DOM lists every device (one that died as gone) and the run's
progress advancing; a screenshot is saved (the README's, when
``EDGEBED_DASHBOARD_PNG`` names where to put it).

Chromium is driven over its DevTools protocol (a WebSocket, with aiohttp's
client): no driver or browser is downloaded.
"""
import asyncio
import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest

from tests.helpers import wait_until
from tests.http_helpers import get_json, samples, scrape, standing_with_http, submit, wait_state

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed "
                                "(apt-get install chromium; .ci/run installs it)")
NAMES = ["d-jetson", "d-pi5", "d-lost"]
# What the test reads from the page: device rows, their states, the run's progress.
PROBE = """JSON.stringify({
  devices: [...document.querySelectorAll('#fleet tbody tr[data-device]')]
    .map(r => [r.dataset.device, r.dataset.state]),
  progress: [...document.querySelectorAll('#runs tr[data-run="RUN"] td[data-progress]')]
    .map(td => Number(td.dataset.progress)),
  spans: Number((document.querySelector('#timeline svg') || {dataset: {}}).dataset.spans || 0),
  energy: document.querySelectorAll('#energy tbody tr[data-device]').length,
  conn: document.getElementById('conn').textContent})"""


class Chromium:
    """One headless Chromium and one page, over the DevTools protocol."""

    def __init__(self, profile: Path) -> None:
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             "--window-size=1280,1400", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        wait_until(lambda: port_file.exists() and port_file.read_text().strip(), 60, 0.1,
                   "Chromium's DevTools port")
        self.port = int(port_file.read_text().split()[0])
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self._connect())
        self._ids = 0

    async def _connect(self) -> None:
        self.http = aiohttp.ClientSession()
        async with self.http.get(f"http://127.0.0.1:{self.port}/json/list") as reply:
            pages = [t for t in await reply.json() if t["type"] == "page"]
        self.ws = await self.http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)

    async def _send(self, method: str, params: dict) -> dict:
        self._ids += 1
        await self.ws.send_json({"id": self._ids, "method": method, "params": params})
        while True:
            message = json.loads((await self.ws.receive()).data)
            if message.get("id") == self._ids:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def call(self, method: str, **params) -> dict:
        return self.loop.run_until_complete(asyncio.wait_for(self._send(method, params), 30))

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(data["data"]))

    def close(self) -> None:
        async def close():
            await self.ws.close()
            await self.http.close()
        try:
            self.loop.run_until_complete(close())
        finally:
            self.loop.close()
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def browser(tmp_path):
    chromium = Chromium(tmp_path / "profile")
    yield chromium
    chromium.close()


def test_the_page_lists_the_fleet_and_follows_a_run(tmp_path, browser):
    with standing_with_http(tmp_path / "state", tmp_path / "agents", NAMES) as (srv, fleet, base):
        links = submit(srv, "links", {}, devices=["d-jetson", "d-pi5"])
        wait_state(srv, links, ("done",), 60)
        fleet.kill("d-lost")  # a board that lost power: gone, never a stale live row
        wait_until(lambda: {d["name"]: d["state"] for d in get_json(f"{base}/api/fleet")
                            ["devices"]}["d-lost"] == "gone", 30, 0.1, "d-lost to be gone")
        run = submit(srv, "slow", {"seconds": 8.0}, devices=["d-jetson", "d-pi5"])
        wait_state(srv, run, ("running",))
        browser.call("Page.enable")
        browser.call("Page.navigate", url=f"{base}/#run={run.run_id}")
        probe = PROBE.replace("RUN", run.run_id)
        seen, page = [], {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and run.status.state == "running":
            page = json.loads(browser.evaluate(probe) or "{}")
            if page.get("progress"):
                seen.append(page["progress"][0])
            if len(set(seen)) >= 3 and page["spans"] and page["energy"]:
                break
            time.sleep(0.3)
        assert dict(page["devices"]) == {"d-jetson": "busy", "d-pi5": "busy", "d-lost": "gone"}
        assert page["conn"] == "live"
        advancing = sorted(set(seen))
        assert len(advancing) >= 3, f"progress seen: {seen}"
        assert seen == sorted(seen), f"progress went back: {seen}"
        assert page["spans"] > 0 and page["energy"] == 2
        shot = tmp_path / "dashboard.png"
        browser.screenshot(shot)
        assert shot.stat().st_size > 10_000
        if os.environ.get("EDGEBED_DASHBOARD_PNG"):
            shutil.copyfile(shot, os.environ["EDGEBED_DASHBOARD_PNG"])
        wait_state(srv, run, ("done",), 60)
        final = json.loads(browser.evaluate(probe) or "{}")
        wait_until(lambda: json.loads(browser.evaluate(probe))["progress"][0] == 1, 10, 0.2,
                   "the page to show the run done")
        assert final["devices"]


def test_an_unknown_run_says_so_on_the_page(tmp_path, browser):
    with standing_with_http(tmp_path / "state", tmp_path / "agents", ["d-one"],
                            power_backend="null") as (_, _, base):
        browser.call("Page.navigate", url=f"{base}/#run=no-such-run")
        text = wait_until(lambda: browser.evaluate(
            "document.getElementById('run-error').textContent"), 30, 0.2, "the run's error")
        assert text == "404: no run 'no-such-run' on this server"
        wait_until(lambda: browser.evaluate(
            "document.querySelectorAll('#fleet tr[data-device=\"d-one\"]').length") == 1, 30, 0.2,
            "the fleet")


@pytest.mark.slow
def test_a_federated_run_on_the_page(tmp_path, browser):
    """feel-train on three agents, seen while it runs: rounds with the
    predicted round time beside the measured one, every phase on the
    timeline. The README's screenshot: EDGEBED_DASHBOARD_PNG=deploy/dashboard.png."""
    names = ["jetson-1", "pi5-1", "pi4-1", "pi4-2"]
    with standing_with_http(tmp_path / "state", tmp_path / "agents", names) as (srv, fleet, base):
        links = submit(srv, "links", {}, devices=names[:3])
        wait_state(srv, links, ("done",), 60)
        fleet.kill("pi4-2")
        run = submit(srv, "feel-train", {"partitions": ["iid"], "budget_s": 30.0, "target": 0.9,
                                         "bits": 8, "individual_epochs": 1}, devices=names[:3])
        wait_state(srv, run, ("running",))
        browser.call("Page.navigate", url=f"{base}/#run={run.run_id}")
        rows = "document.querySelectorAll('#comparisons tbody tr td.num').length / 4"
        wait_until(lambda: run.status.state != "running" or browser.evaluate(rows) >= 4, 240, 0.5,
                   "rounds with predicted and measured round times on the page")
        assert run.status.state == "running", run.status.error
        time.sleep(1.0)  # the timeline's next update
        page = json.loads(browser.evaluate(PROBE.replace("RUN", run.run_id)))
        assert dict(page["devices"])["pi4-2"] == "gone"
        assert page["spans"] > 0 and page["energy"] >= 6
        shot = tmp_path / "dashboard.png"
        browser.screenshot(shot)
        if os.environ.get("EDGEBED_DASHBOARD_PNG"):
            shutil.copyfile(shot, os.environ["EDGEBED_DASHBOARD_PNG"])
        # /metrics says the same: the rates the devices were allocated, and
        # the run's prediction error (the median of the page's rows).
        view = get_json(f"{base}/api/runs/{run.run_id}")
        metrics = scrape(base)
        applied = {a["device"]: a["rate_bps"] for a in view["digest"]["applied"]
                   if a["phase"] == "upload"}
        assert set(applied) == set(names[:3])
        for device, rate in applied.items():
            scraped = samples(metrics, "edgebed_device_allocated_rate_bps", device=device)
            assert scraped and scraped[0][0]["direction"] == "up"
            assert scraped[0][1] == pytest.approx(rate)  # one plan per scheme: the same rate
        errors = [r["rel_error"] for r in view["digest"]["comparisons"]]
        scraped = samples(metrics, "edgebed_run_prediction_error_ratio", run_id=run.run_id,
                          quantity="round time")
        assert scraped and min(errors) <= scraped[0][1] <= max(errors)
        srv.run(srv.plane.cancel, run.run_id)
        wait_state(srv, run, ("cancelled",), 60)
