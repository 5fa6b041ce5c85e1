"""What the dashboard and metrics tests share: a standing server with its
HTTP listener and real agents, plain HTTP requests, and the sums a run's
``events.jsonl`` holds."""
import contextlib
import json
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from prometheus_client.parser import text_string_to_metric_families

from edgebed.server.core import ServerConfig
from edgebed.server.http import attach_http
from edgebed.testbed import AgentSpec, Fleet, ServerThread
from tests.helpers import wait_until


@contextlib.contextmanager
def standing_with_http(state_dir: Path, log_dir: Path, names: Sequence[str],
                       admin_token: Optional[str] = None, power_backend: str = "utilization:rpi4b",
                       tick_s: float = 0.25, agent_token: Optional[str] = None
                       ) -> Iterator[Tuple[ServerThread, Fleet, str]]:
    """A standing server (runs and credentials under ``state_dir``, the
    test-only ``slow`` suite), its dashboard on a free loopback port, and one
    agent per name (presenting ``agent_token``). Yields (server thread,
    fleet, base URL)."""
    srv = ServerThread(ServerConfig(listen="127.0.0.1:0", heartbeat_interval_s=0.5,
                                    heartbeat_timeout_s=5.0, state_dir=str(state_dir)),
                       state_dir=state_dir,
                       admin_token=admin_token)
    srv.plane.suites["slow"] = "tests.slow_suite"
    listener = srv.call(attach_http(srv.server, srv.plane, "127.0.0.1:0", admin_token, tick_s))
    fleet = Fleet(srv.address, [AgentSpec(n, power_backend=power_backend,
                                          extra_args=("--label", f"rack={i % 2}"))
                                for i, n in enumerate(names)],
                  token=agent_token, log_dir=log_dir, benchmark_s=0.05)
    try:
        fleet.start()
        fleet.wait_registered(srv, len(names), 120)
        yield srv, fleet, f"http://127.0.0.1:{listener.port}"
    finally:
        fleet.stop()
        srv.call(listener.stop(), 10)
        srv.stop()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def request(url: str, headers: Optional[Dict[str, str]] = None, data: Optional[bytes] = None,
            timeout_s: float = 10.0) -> Tuple[int, Dict[str, str], bytes]:
    """(status, headers, body), errors included (status 0: no connection);
    redirects are not followed."""
    opener = urllib.request.build_opener(_NoRedirect)
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with opener.open(req, timeout=timeout_s) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()
    except urllib.error.URLError as exc:
        return 0, {}, str(exc.reason).encode()


def first_events(url: str, count: int, headers: Optional[Dict[str, str]] = None,
                 timeout_s: float = 10.0) -> List[Tuple[str, dict]]:
    """The first ``count`` server-sent events of ``url`` as (event, data)."""
    req = urllib.request.Request(url, headers=headers or {})
    events, name = [], ""
    with urllib.request.urlopen(req, timeout=timeout_s) as reply:
        assert reply.headers["Content-Type"].startswith("text/event-stream")
        while len(events) < count:
            line = reply.readline().decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[len("data: "):])))
    return events


def get_json(url: str, headers: Optional[Dict[str, str]] = None):
    status, _, body = request(url, headers)
    assert status == 200, (status, body[:500])
    return json.loads(body)


def scrape(base: str, headers: Optional[Dict[str, str]] = None) -> List[Tuple[str, Dict[str, str],
                                                                            float]]:
    """Every sample of ``/metrics`` as (name, labels, value)."""
    status, _, body = request(f"{base}/metrics", headers)
    assert status == 200, (status, body[:500])
    return [(s.name, dict(s.labels), s.value)
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples]


def metric_families(base: str, headers: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Every metric ``/metrics`` declares (with or without samples now): name -> type."""
    status, _, body = request(f"{base}/metrics", headers)
    assert status == 200, (status, body[:500])
    return {family.name: family.type for family in text_string_to_metric_families(body.decode())}


def samples(metrics, name: str, **labels) -> List[Tuple[Dict[str, str], float]]:
    return [(lab, v) for n, lab, v in metrics
            if n == name and all(lab.get(k) == want for k, want in labels.items())]


def events_totals(run_dir: Path) -> Dict[Tuple[str, str], Tuple[float, float, int]]:
    """Per (device, phase): seconds, joules and span count in ``events.jsonl``."""
    totals = defaultdict(lambda: [0.0, 0.0, 0])
    path = run_dir / "events.jsonl"
    if not path.exists():
        return {}
    for line in path.read_text().splitlines():
        event = json.loads(line)
        if "device" in event and "start_s" in event:
            entry = totals[(event["device"], event["phase"])]
            entry[0] += max(0.0, event["end_s"] - event["start_s"])
            entry[1] += event["energy_j"]
            entry[2] += 1
    return {k: tuple(v) for k, v in totals.items()}


def submit(srv: ServerThread, suite: str, options: dict, devices: Sequence[str] = ()):
    """Submit through the plane, as the Control service does; the run."""
    return srv.run(srv.plane.submit, suite, json.dumps(options), list(devices), "", 0, [])


def wait_state(srv: ServerThread, run, states, timeout_s: float = 120.0) -> str:
    return wait_until(lambda: run.status.state if run.status.state in states else None,
                      timeout_s, 0.1, f"run {run.run_id} to be {states}")
