"""The standing server's Control service: submit, follow, fetch, queue,
cancel, the fleet, bad submissions, and the client's command line."""
import json
import socket
import time

import grpc
import pytest

from edgebed.benchmarks import cli
from edgebed.proto import control_pb2 as cpb
from edgebed.proto import control_pb2_grpc
from edgebed.proto.channel import CHANNEL_OPTIONS, auth_metadata
from edgebed.server.core import ServerConfig
from edgebed.testbed import AgentSpec, Fleet, ServerThread
from tests.helpers import wait_until

NAMES = ["alpha", "beta"]


@pytest.fixture(scope="module")
def standing(tmp_path_factory):
    """A standing server (Control service, runs under a state dir) with two
    agents, one of them labelled."""
    state = tmp_path_factory.mktemp("state")
    srv = ServerThread(ServerConfig(listen="127.0.0.1:0", heartbeat_interval_s=0.5,
                                    heartbeat_timeout_s=5.0), state_dir=state)
    srv.plane.suites["slow"] = "tests.slow_suite"
    fleet = Fleet(srv.address, [AgentSpec("alpha", power_backend="null",
                                          extra_args=("--label", "room=lab1")),
                                AgentSpec("beta", power_backend="null")],
                  log_dir=tmp_path_factory.mktemp("agents"), benchmark_s=0.05).start()
    fleet.wait_registered(srv, 2, 120)
    yield srv, fleet, state
    fleet.stop()
    srv.stop()


@pytest.fixture(scope="module")
def control(standing):
    srv = standing[0]
    channel = grpc.insecure_channel(srv.address, options=CHANNEL_OPTIONS)
    yield control_pb2_grpc.ControlStub(channel)
    channel.close()


def submit(control, suite, options=None, devices=(), selector="", count=0):
    return control.Submit(cpb.SubmitRequest(suite=suite, options_json=json.dumps(options or {}),
                                            devices=list(devices), selector=selector,
                                            count=count))


def final_state(control, run_id, timeout_s=120):
    logs = []
    for event in control.Watch(cpb.WatchRequest(run_id=run_id), timeout=timeout_s):
        if event.WhichOneof("body") == "log":
            logs.append(event.log)
        elif event.WhichOneof("body") == "state":
            last = event.state
    return last, logs


def state_of(control, run_id):
    return next(r for r in control.ListRuns(cpb.ListRunsRequest()).runs if r.run_id == run_id)


def test_the_fleet_lists_devices_with_labels_and_states(control):
    fleet = {d.name: d for d in control.Fleet(cpb.FleetRequest()).devices}
    assert set(fleet) == set(NAMES)
    assert fleet["alpha"].labels["room"] == "lab1"
    assert fleet["beta"].labels["name"] == "beta"
    assert {d.state for d in fleet.values()} == {"idle"}
    assert all(d.heartbeat_age_s >= 0 for d in fleet.values())
    assert fleet["alpha"].profile.cpu_cores >= 1


def test_a_run_is_submitted_followed_and_its_files_fetched(standing, control, tmp_path):
    info = submit(control, "links")
    assert info.state == "queued"
    assert sorted(info.devices) == NAMES
    final, logs = final_state(control, info.run_id)
    assert final.state == "done", final.error
    assert any("links on alpha, beta" in line for line in logs)
    files = {}
    for chunk in control.Fetch(cpb.RunRef(run_id=info.run_id)):
        files[chunk.path] = files.get(chunk.path, b"") + chunk.data
    assert {"config.json", "summary.json", "links.csv", "log.txt", "run.json"} <= set(files)
    summary = json.loads(files["summary.json"])
    for name in NAMES:
        assert summary["links"][name]["up_capacity_bps"] > 0
        assert summary["links"][name]["provenance"] == "measured"
    assert summary["provenance"]["links"].startswith("measured")
    # The server kept them, and the fleet now shows each measured link.
    fleet = {d.name: d for d in control.Fleet(cpb.FleetRequest()).devices}
    assert fleet["alpha"].link.up_capacity_bps > 0
    assert (standing[2] / "runs" / "links" / info.run_id / "summary.json").exists()


def test_watchers_get_the_span_lines_events_jsonl_holds(standing, control):
    """The plane's span sink serialises a span once: watchers get the very
    line the run's events.jsonl got (NaN as null, never a bare NaN)."""
    info = submit(control, "slow", {"seconds": 1.0})
    final, _ = final_state(control, info.run_id)
    assert final.state == "done", final.error
    watched = [event.span_json for event in control.Watch(cpb.WatchRequest(run_id=info.run_id),
                                                          timeout=30)
               if event.WhichOneof("body") == "span_json"]
    written = (standing[2] / "runs" / "slow" / info.run_id / "events.jsonl").read_text()
    assert watched and watched == [line for line in written.splitlines() if line]


@pytest.mark.parametrize("request_args, words", [
    ({"suite": "tl-compression"}, ["unknown suite", "tl-compression"]),   # runs on no device
    ({"suite": "links", "options": {"colour": "red"}}, ["unknown key", "'colour'"]),
    ({"suite": "slow", "options": {"seconds": "long"}}, ["seconds", "number"]),
    ({"suite": "links", "selector": "room=lab9"}, ["no attached device matches", "room=lab9"]),
    ({"suite": "links", "selector": "room"}, ["key=value"]),
    ({"suite": "links", "devices": ["gamma"]}, ["no device named gamma"]),
    ({"suite": "links", "count": 3}, ["3 devices asked for, 2 match"]),
    ({"suite": "split-testbed"}, ["needs at least 4 devices"]),
])
def test_a_bad_submission_is_refused_before_anything_is_claimed(control, request_args, words):
    before = len(control.ListRuns(cpb.ListRunsRequest()).runs)
    with pytest.raises(grpc.RpcError) as info:
        submit(control, **request_args)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    for word in words:
        assert word in info.value.details()
    assert len(control.ListRuns(cpb.ListRunsRequest()).runs) == before
    assert {d.state for d in control.Fleet(cpb.FleetRequest()).devices} == {"idle"}


def test_a_selector_claims_the_matching_devices(control):
    info = submit(control, "links", selector="room=lab1")
    assert list(info.devices) == ["alpha"]
    assert final_state(control, info.run_id)[0].state == "done"


def test_runs_queue_for_busy_devices_run_at_once_on_disjoint_ones_and_cancel(standing, control):
    srv = standing[0]
    first = submit(control, "slow", {"seconds": 60}, devices=["alpha"])
    wait_until(lambda: state_of(control, first.run_id).state == "running", 60, what="first to run")
    waiting = submit(control, "slow", {"seconds": 1}, devices=["alpha"])
    other = submit(control, "slow", {"seconds": 1}, devices=["beta"])
    assert state_of(control, waiting.run_id).state == "queued"
    assert state_of(control, waiting.run_id).queue_position == 1
    assert final_state(control, other.run_id)[0].state == "done"  # disjoint: ran meanwhile
    assert state_of(control, waiting.run_id).state == "queued"
    fleet = {d.name: d for d in control.Fleet(cpb.FleetRequest()).devices}
    assert fleet["alpha"].state == "busy"
    assert fleet["alpha"].run_id == first.run_id

    asked = time.monotonic()
    control.Cancel(cpb.RunRef(run_id=first.run_id))
    final, logs = final_state(control, first.run_id)
    assert final.state == "cancelled"
    assert time.monotonic() - asked < 10  # stops within a few seconds
    assert any("partial results are kept" in line for line in logs)
    run_dir = standing[2] / "runs" / "slow" / first.run_id
    assert (run_dir / "config.json").exists()
    assert "working on alpha" in (run_dir / "log.txt").read_text()
    # The device finishes the command the run abandoned, then the queued run gets it.
    assert final_state(control, waiting.run_id)[0].state == "done"
    assert not srv.run(lambda: [k for k in srv.server.outbox._offers if first.run_id in k[1]])


def test_a_queued_run_can_be_cancelled(control):
    holder = submit(control, "slow", {"seconds": 5}, devices=["beta"])
    queued = submit(control, "slow", {"seconds": 1}, devices=["beta"])
    assert control.Cancel(cpb.RunRef(run_id=queued.run_id)).state == "cancelled"
    assert final_state(control, holder.run_id)[0].state == "done"
    assert state_of(control, queued.run_id).state == "cancelled"


def test_unknown_runs_are_not_found(control):
    for call in (lambda: control.Cancel(cpb.RunRef(run_id="nope")),
                 lambda: list(control.Fetch(cpb.RunRef(run_id="nope"))),
                 lambda: list(control.Watch(cpb.WatchRequest(run_id="nope")))):
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert "nope" in info.value.details()


def test_the_client_submits_follows_and_writes_results_like_a_local_run(standing, tmp_path,
                                                                       capsys):
    srv = standing[0]
    rc = cli.main(["links", "--server", srv.address, "--devices", "beta",
                   "--results", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    run_dir = next((tmp_path / "links").iterdir())
    assert {"config.json", "summary.json", "links.csv"} <= {p.name for p in run_dir.iterdir()}
    assert "beta" in (run_dir / "links.csv").read_text()
    assert cli.main(["runs", "--server", srv.address]) == 0
    assert run_dir.name in capsys.readouterr().out
    assert cli.main(["fleet", "--server", srv.address]) == 0
    assert "room=lab1" in capsys.readouterr().out
    fetched = tmp_path / "again"
    assert cli.main(["fetch", run_dir.name, "--server", srv.address,
                     "--results", str(fetched)]) == 0
    assert (fetched / "links" / run_dir.name / "summary.json").read_text() == \
        (run_dir / "summary.json").read_text()
    assert cli.main(["cancel", "no-such-run", "--server", srv.address]) == 2
    assert "no run 'no-such-run'" in capsys.readouterr().err
    assert cli.main(["tl-compression", "--server", srv.address]) == 2  # a modeled suite
    assert "unrecognized arguments: --server" in capsys.readouterr().err
    assert cli.main(["transport", "--server", srv.address]) == 2  # measures this host
    assert "run it without --server" in capsys.readouterr().err


def _lan_address():
    """This host's address on a non-loopback interface, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: it only picks a route
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_control_needs_the_admin_token_and_device_tokens_do_not_grant_it(tmp_path):
    srv = ServerThread(ServerConfig(listen="127.0.0.1:0", token="device-secret"),
                       state_dir=tmp_path, admin_token="admin-secret")
    try:
        with grpc.insecure_channel(srv.address, options=CHANNEL_OPTIONS) as channel:
            stub = control_pb2_grpc.ControlStub(channel)
            for token, words in ((None, "missing admin credential"),
                                 ("device-secret", "wrong admin token")):
                with pytest.raises(grpc.RpcError) as info:
                    stub.ListRuns(cpb.ListRunsRequest(), metadata=auth_metadata(token))
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert words in info.value.details()
            assert stub.ListRuns(cpb.ListRunsRequest(),
                                 metadata=auth_metadata("admin-secret")).runs == []
    finally:
        srv.stop()


def test_without_an_admin_token_control_answers_loopback_only(tmp_path):
    lan = _lan_address()
    if lan is None:
        pytest.skip("no non-loopback interface to call from")
    srv = ServerThread(ServerConfig(listen="0.0.0.0:0"), state_dir=tmp_path)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{srv.port}") as local:
            assert control_pb2_grpc.ControlStub(local).ListRuns(cpb.ListRunsRequest()).runs == []
        with grpc.insecure_channel(f"{lan}:{srv.port}") as remote:
            with pytest.raises(grpc.RpcError) as info:
                control_pb2_grpc.ControlStub(remote).ListRuns(cpb.ListRunsRequest())
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "loopback" in info.value.details()
    finally:
        srv.stop()


def test_fetch_lists_and_reads_in_worker_threads_and_chunks_large_files(tmp_path):
    """Control.Fetch lists a run's files and reads them off the event loop,
    in CHUNK_BYTES pieces, the last one flagged."""
    import asyncio
    import threading
    from types import SimpleNamespace

    from edgebed.server.control import service
    from edgebed.server.control.runs import Run, RunStatus

    big = bytes(range(256)) * (service.CHUNK_BYTES * 5 // 2 // 256)
    (tmp_path / "big.bin").write_bytes(big)
    (tmp_path / "small.txt").write_text("hi")
    run = Run(RunStatus("r1", "slow", "{}", ["alpha"]), tmp_path)
    listed_on = []
    files = run.files
    run.files = lambda: (listed_on.append(threading.get_ident()), files())[1]
    plane = SimpleNamespace(get=lambda run_id: run)

    async def fetch():
        loop_thread = threading.get_ident()
        chunks = [c async for c in service.ControlServicer(plane).Fetch(
            cpb.RunRef(run_id="r1").SerializeToString(), None)]
        return loop_thread, chunks

    loop_thread, chunks = asyncio.run(fetch())
    assert listed_on and listed_on[0] != loop_thread
    assert [(c.path, c.last) for c in chunks] == [("big.bin", False), ("big.bin", False),
                                                  ("big.bin", True), ("small.txt", True)]
    assert b"".join(c.data for c in chunks[:3]) == big and chunks[3].data == b"hi"
