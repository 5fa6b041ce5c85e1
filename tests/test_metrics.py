"""``/metrics`` and the dashboard's API on a standing server with real agents:
per-device phase seconds and joules that agree with a run's events.jsonl,
scraped while it runs; devices that die shown as gone; the listener up
while runs fail; 401 without the admin token, 404 for unknown runs."""
import json
import re
from pathlib import Path
from unittest import mock

import pytest
from aiohttp.test_utils import make_mocked_request

from edgebed.server import cli as server_cli
from edgebed.server.http import parse_listen
from edgebed.server.http.auth import DashboardAuth
from edgebed.server.identity import CredentialStore
from tests.helpers import wait_until
from tests.http_helpers import (
    events_totals,
    first_events,
    get_json,
    metric_families,
    request,
    samples,
    scrape,
    standing_with_http,
    submit,
    wait_state,
)

NAMES = ["m-alpha", "m-beta", "m-doomed"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def standing(tmp_path_factory):
    with standing_with_http(tmp_path_factory.mktemp("state"), tmp_path_factory.mktemp("agents"),
                            NAMES) as env:
        yield env


def _phase_metrics(metrics, name, suite):
    out = {}
    for labels, value in samples(metrics, name, suite=suite):
        key = (labels["device"], labels["phase"])
        out[key] = out.get(key, 0.0) + value
    return out


def test_phase_seconds_and_joules_agree_with_the_runs_events_while_it_runs(standing):
    srv, _, base = standing
    run = submit(srv, "slow", {"seconds": 5.0}, devices=["m-alpha", "m-beta"])
    wait_state(srv, run, ("running",))
    wait_until(lambda: len(events_totals(run.path)) >= 2, 60, 0.1, "spans in events.jsonl")
    # The scrape happens between two reads of the file, and the counters and
    # the file take each span at the same moment: before <= scraped <= after.
    before = events_totals(run.path)
    metrics = scrape(base)
    after = events_totals(run.path)
    assert run.status.state == "running"
    seconds = _phase_metrics(metrics, "edgebed_phase_seconds_total", "slow")
    joules = _phase_metrics(metrics, "edgebed_phase_energy_joules_total", "slow")
    assert set(seconds) == set(after) == {("m-alpha", "compute"), ("m-beta", "compute")}
    for key in after:
        assert before[key][0] - 1e-9 <= seconds[key] <= after[key][0] + 1e-9
        assert before[key][1] - 1e-9 <= joules[key] <= after[key][1] + 1e-9
        assert joules[key] > 0  # the utilization model: labelled estimated
    labels = samples(metrics, "edgebed_phase_energy_joules_total", suite="slow")[0][0]
    assert labels["power_backend"].startswith("utilization")
    assert labels["provenance"] == "estimated"
    assert samples(metrics, "edgebed_runs", state="running")[0][1] == 1
    assert samples(metrics, "edgebed_run_progress_ratio", run_id=run.run_id)
    assert samples(metrics, "edgebed_device_state", device="m-alpha", state="busy")[0][1] == 1
    # The link each run measures first, per direction, labelled measured.
    up = samples(metrics, "edgebed_device_link_capacity_bps", device="m-alpha", direction="up")
    assert up and up[0][0]["provenance"] == "measured" and up[0][1] > 0
    assert samples(metrics, "edgebed_device_heartbeat_age_seconds", device="m-beta")[0][1] < 5

    # When the run is over, the counters and the file agree exactly.
    wait_state(srv, run, ("done",), 60)
    final = events_totals(run.path)
    metrics = scrape(base)
    seconds = _phase_metrics(metrics, "edgebed_phase_seconds_total", "slow")
    joules = _phase_metrics(metrics, "edgebed_phase_energy_joules_total", "slow")
    spans = _phase_metrics(metrics, "edgebed_phase_spans_total", "slow")
    for key, (sec, joule, count) in final.items():
        assert seconds[key] == pytest.approx(sec, rel=1e-9)
        assert joules[key] == pytest.approx(joule, rel=1e-9)
        assert spans[key] == count
    # The page's view of the run reads the same file.
    view = get_json(f"{base}/api/runs/{run.run_id}")
    assert view["status"]["state"] == "done"
    table = {(r["device"], r["phase"]): r for r in view["digest"]["energy"]}
    for key, (sec, joule, count) in final.items():
        assert table[key]["seconds"] == pytest.approx(sec, rel=1e-9)
        assert table[key]["energy_j"] == pytest.approx(joule, rel=1e-9)
        assert table[key]["spans"] == count and table[key]["provenance"] == "estimated"
    assert view["summary"]["provenance"]["rounds"] == "measured"


def test_the_deploy_examples_name_only_metrics_the_server_exports(standing):
    """deploy/grafana-dashboard.json and deploy/prometheus.yml against a real scrape."""
    families = metric_families(standing[2])
    exported = set(families) | {f"{n}_total" for n, kind in families.items() if kind == "counter"}
    grafana = (ROOT / "deploy" / "grafana-dashboard.json").read_text()
    exprs = [t["expr"] for p in json.loads(grafana)["panels"] for t in p.get("targets", ())]
    assert exprs
    named = {m for expr in exprs for m in re.findall(r"\bedgebed_[a-z_]+", expr)}
    assert named and named <= exported, named - exported


def test_transfers_in_flight_is_one_unlabelled_gauge_of_every_transfer(standing):
    """It counts Upload, Download and Infer streams (the server's limit does):
    no direction label claiming they are uploads; derived from the per-device
    counts, so the two cannot drift apart."""
    srv = standing[0]
    found = samples(scrape(standing[2]), "edgebed_transfers_in_flight")
    assert len(found) == 1 and found[0][0] == {} and found[0][1] >= 0
    state = srv.server
    before = dict(state.transfers_by_device)
    try:
        state.transfers_by_device.update({"t-one": 2, "t-two": 1})
        assert state.transfers_in_flight == sum(before.values()) + 3
    finally:
        state.transfers_by_device.pop("t-one", None)
        state.transfers_by_device.pop("t-two", None)


def test_a_device_that_dies_mid_run_is_gone_and_the_listener_stays_up(standing):
    srv, fleet, base = standing
    run = submit(srv, "slow", {"seconds": 30.0}, devices=["m-doomed"])
    wait_state(srv, run, ("running",))
    wait_until(lambda: events_totals(run.path), 60, 0.1, "the doomed device's first span")
    fleet.kill("m-doomed")
    wait_state(srv, run, ("failed",), 30)
    fleet_view = {d["name"]: d for d in get_json(f"{base}/api/fleet")["devices"]}
    assert fleet_view["m-doomed"]["state"] == "gone"
    assert fleet_view["m-doomed"]["disconnect_reason"]
    assert fleet_view["m-alpha"]["state"] in ("idle", "busy", "draining")
    metrics = scrape(base)
    assert samples(metrics, "edgebed_device_state", device="m-doomed", state="gone")[0][1] == 1
    assert samples(metrics, "edgebed_device_state", device="m-doomed", state="idle")[0][1] == 0
    assert samples(metrics, "edgebed_devices", state="gone")[0][1] == 1
    assert samples(metrics, "edgebed_runs", state="failed")[0][1] >= 1
    runs = {r["run_id"]: r for r in get_json(f"{base}/api/runs")["runs"]}
    assert runs[run.run_id]["state"] == "failed" and runs[run.run_id]["error"]
    view = get_json(f"{base}/api/runs/{run.run_id}")
    assert view["status"]["error"] and any("failed" in line for line in view["log"])
    # The live stream still answers, for the failed run too.
    events = dict(first_events(f"{base}/api/stream?run={run.run_id}", 3))
    assert events["run"]["status"]["state"] == "failed"
    assert {d["name"]: d["state"] for d in events["fleet"]["devices"]}["m-doomed"] == "gone"


def test_unknown_runs_are_404_with_a_message(standing):
    _, _, base = standing
    for path in ("/api/runs/no-such-run", "/api/runs/no-such-run/spans",
                 "/api/stream?run=no-such-run"):
        status, _, body = request(base + path)
        assert status == 404, path
        assert json.loads(body)["error"] == "no run 'no-such-run' on this server"
    status, _, body = request(base + "/api/runs/x/spans?after=soon")
    assert status in (400, 404) and "error" in json.loads(body)
    status, _, body = request(base + "/no/such/page")
    assert status == 404 and json.loads(body)["error"]


def test_with_an_admin_token_everything_but_health_needs_it(tmp_path):
    token = "s3cret-admin"
    store = CredentialStore(tmp_path / "state")
    alice, board = store.enroll("alice", role="admin"), store.enroll("t-one")
    with standing_with_http(tmp_path / "state", tmp_path / "agents", ["t-one"],
                            admin_token=token, power_backend="null",
                            agent_token=board) as (_, _, base):
        for path in ("/metrics", "/api/fleet", "/api/runs", "/api/runs/x", "/api/stream"):
            status, headers, body = request(base + path)
            assert status == 401, path
            assert "missing admin credential" in json.loads(body)["error"]
            assert headers["WWW-Authenticate"].startswith("Bearer")
        status, _, body = request(base + "/metrics", {"Authorization": "Bearer wrong"})
        assert status == 401 and json.loads(body)["error"] == "wrong admin token or credential"
        # The Control service's rule: the admin token or an enrolled admin, never a board.
        status, _, body = request(base + "/metrics", {"Authorization": f"Bearer {board}"})
        assert status == 403 and "t-one holds a device credential" in json.loads(body)["error"]
        for secret in (token, alice):
            bearer = {"Authorization": f"Bearer {secret}"}
            assert samples(scrape(base, bearer), "edgebed_devices", state="idle")[0][1] == 1
        assert request(base + "/healthz")[0] == 200
        # A browser gets a login form, then a session cookie.
        status, _, body = request(base + "/", {"Accept": "text/html"})
        assert status == 401 and b'action="/login"' in body
        status, _, _ = request(base + "/login", data=b"token=nope")
        assert status == 401
        status, headers, _ = request(base + "/login", data=f"token={alice}".encode())
        assert status == 303 and "HttpOnly" in headers["Set-Cookie"]
        assert alice not in headers["Set-Cookie"]  # the browser keeps a session, not the secret
        cookie = headers["Set-Cookie"].split(";", 1)[0]
        assert request(base + "/", {"Cookie": cookie})[0] == 200
        assert get_json(base + "/api/fleet", {"Cookie": cookie})["devices"][0]["name"] == "t-one"
        status, _, body = request(base + "/api/runs", {"Cookie": f"edgebed_session={alice}"})
        assert status == 401 and "log in again" in json.loads(body)["error"]


def test_without_admins_only_loopback_callers_are_answered():
    def from_peer(host):
        transport = mock.Mock()
        transport.get_extra_info.side_effect = lambda key, default=None: (
            (host, 40000) if key == "peername" else default)
        return make_mocked_request("GET", "/metrics", transport=transport)

    open_server = DashboardAuth(None, None)
    assert open_server.refusal(from_peer("127.0.0.1")) is None
    assert open_server.refusal(from_peer("::1")) is None
    assert "loopback callers only" in open_server.refusal(from_peer("192.0.2.7"))[1]
    status, why = DashboardAuth("tok", None).refusal(from_peer("127.0.0.1"))
    assert status == 401 and why.startswith("missing admin credential")


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:8080", ("127.0.0.1", 8080)), ("[::1]:0", ("::1", 0)), ("none", None),
    ("", None), ("0.0.0.0:9", ("0.0.0.0", 9))])
def test_http_listen_addresses(text, expected):
    assert parse_listen(text) == expected


@pytest.mark.parametrize("bad", ["8080", "host:port", "127.0.0.1:70000"])
def test_edgebed_server_refuses_a_bad_http_listen(bad, capsys):
    with pytest.raises(SystemExit) as info:
        server_cli.parse_args(["--http-listen", bad])
    assert info.value.code == 2
    assert "--http-listen" in capsys.readouterr().err
