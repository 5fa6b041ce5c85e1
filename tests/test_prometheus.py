"""A real Prometheus (Debian's ``prometheus``) scrapes a standing server's
``/metrics`` with the admin token, and a metric comes back through
Prometheus's own query API."""
import json
import shutil
import socket
import subprocess
import urllib.parse
from pathlib import Path

import pytest

from tests.helpers import wait_until
from tests.http_helpers import get_json, request, standing_with_http, submit, wait_state

PROMETHEUS = shutil.which("prometheus")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(PROMETHEUS is None, reason="Prometheus is not installed "
                                 "(apt-get install prometheus; .ci/run installs it)")]
TOKEN = "prometheus-test-admin"
ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(target: str, token_file: Path) -> str:
    """deploy/prometheus.yml, pointed at the test's server and token, every second."""
    text = (ROOT / "deploy" / "prometheus.yml").read_text()
    for example, here in (("127.0.0.1:8080", target),
                          ("/etc/prometheus/edgebed-admin-token", str(token_file)),
                          ("scrape_interval: 15s", "scrape_interval: 1s"),
                          ("scrape_interval: 5s", "scrape_interval: 1s"),
                          ("scrape_timeout: 4s", "scrape_timeout: 1s")):
        assert example in text, f"deploy/prometheus.yml no longer has {example!r}"
        text = text.replace(example, here)
    return text


def _query(prom: str, expr: str):
    data = get_json(f"{prom}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
    assert data["status"] == "success", data
    return data["data"]["result"]


def test_prometheus_scrapes_the_server_and_answers_a_query(tmp_path):
    names = ["p-one", "p-two"]
    with standing_with_http(tmp_path / "state", tmp_path / "agents", names,
                            admin_token=TOKEN) as (srv, _, base):
        token_file = tmp_path / "token"
        token_file.write_text(TOKEN)
        config = tmp_path / "prometheus.yml"
        config.write_text(_config(base.split("//", 1)[1], token_file))
        port = _free_port()
        prom = f"http://127.0.0.1:{port}"
        log = open(tmp_path / "prometheus.log", "wb")
        proc = subprocess.Popen([PROMETHEUS, f"--config.file={config}",
                                 f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: proc.poll() is not None or request(f"{prom}/-/ready")[0] == 200,
                       60, 0.2, "Prometheus to be ready")
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            run = submit(srv, "slow", {"seconds": 3.0}, devices=names)
            wait_state(srv, run, ("done",), 60)

            def idle_devices():
                result = _query(prom, 'edgebed_devices{job="edgebed",state="idle"}')
                return result and float(result[0]["value"][1]) == len(names)

            wait_until(idle_devices, 30, 0.5, "Prometheus to hold edgebed_devices")
            seconds = wait_until(lambda: _query(
                prom, 'sum by (device) (edgebed_phase_seconds_total{suite="slow",phase="compute"})'),
                30, 0.5, "phase seconds in Prometheus")
            assert {r["metric"]["device"] for r in seconds} == set(names)
            assert all(float(r["value"][1]) > 0 for r in seconds)
            targets = get_json(f"{prom}/api/v1/targets")["data"]["activeTargets"]
            assert targets[0]["health"] == "up", json.dumps(targets)[:1000]
            assert targets[0]["labels"]["lab"] == "lab1"
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()
