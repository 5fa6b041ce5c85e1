"""Split inference (paper 004) on real agent processes: profile, decide, run,
and the faults (bad model or split, a device killed mid-stream)."""
import asyncio

import pytest

from edgebed.benchmarks.fleet import AgentSpec, Fleet
from edgebed.server.errors import CommandFailed, DeviceDisconnected
from edgebed.server.workloads.split.orchestrator import SplitConfig, SplitInference
from tests.conftest import wait_until

NAMES = ["sp-a", "sp-b", "sp-c"]
LINKS = ["up=20Mbit,down=50Mbit", "up=5Mbit,down=10Mbit", "up=1Mbit,down=2Mbit"]
TINY = SplitConfig(model="lenet", input_size=None, n_inferences=3, warmup=1, profile_repeats=3,
                   gap_s=0.0, slots_h=4, t_d_s=0.04, parallel_limit=2, run_id="split-test")


@pytest.fixture(scope="module")
def split(server, tmp_path_factory):
    fleet = Fleet(server.address, [AgentSpec(n, link=link, power_backend="utilization:rpi4b")
                                   for n, link in zip(NAMES, LINKS)],
                  log_dir=tmp_path_factory.mktemp("split-agents"), benchmark_s=0.05).start()
    try:
        fleet.wait_registered(server, 3, 120)
        orchestrator = SplitInference(server.server, NAMES, TINY)
        server.call(orchestrator.configure(), 300)
        yield orchestrator, fleet
        orchestrator.close()
    finally:
        fleet.stop()


def test_the_solver_gets_measured_inputs(split):
    orchestrator, _ = split
    problem = orchestrator.problem
    assert problem.num_devices == 3 and problem.parallel_limit == 2
    for name, dev in zip(orchestrator.problem_devices, problem.devices):
        profile = orchestrator.profiles[name]
        assert dev.num_layers == 12 and list(dev.t_local_s) == profile["t_local_s"]
        assert all(t > 0 for t in profile["t_local_s"]) and dev.out_bytes[0] == 4 * 28 * 28
        assert dev.rate_up_bps == orchestrator.server.link(name).uplink_bps > 0
        assert profile["p_local_w"] > 0 and profile["provenance"] == "estimated"
    assert (problem.devices[0].t_server_s > 0).all()


def test_the_decision_runs_for_real_and_is_measured_beside_its_prediction(server, split):
    orchestrator, _ = split
    for scheme in ("tpos-uai", "all-offload"):
        run = server.call(orchestrator.run(orchestrator.decide(scheme), scheme), 300)
        assert {r["device"] for r in run.rows} == set(NAMES) and not run.missing
        assert run.max_computing <= 2 and run.max_active <= 2
        for row in run.rows:
            assert row["e2e_s"] > 0 and row["e2e_pred_s"] > 0
            if row["split"] < 12:  # head + tail on two machines == the full forward
                assert row["max_abs_diff"] < 1e-4
                assert row["server_s"] >= row["server_pred_s"]  # released at the end of h_max
        offloaded = [i for i in run.inferences if "overhead_s" in i]
        assert len(offloaded) == 3 * sum(r["split"] < 12 for r in run.rows)
        assert all(i["server_s"] > 0 and i["download_s"] > 0 for i in offloaded)
        assert run.pred_error >= 0
    assert run.chosen_splits == {n: 0 for n in NAMES} and run.overhead_ms is not None


def test_unknown_model_or_split_out_of_range_fails_before_running(server, split):
    for args, words in (({"model": "lenet9", "split": 1}, ["lenet9", "known models"]),
                        ({"model": "lenet", "split": 13}, ["13", "0..12"])):
        with pytest.raises(CommandFailed) as info:
            server.call(server.server.command("sp-a", "split.run", {**args, "n": 1}, 60))
        assert all(w in str(info.value) for w in words)


def test_a_strategy_the_server_did_not_decide_is_refused(server, split):
    orchestrator, _ = split
    executor = orchestrator.executor
    executor.plan("sp-a", "lenet", 8, (1, 1, 1, 1))
    try:
        with pytest.raises(CommandFailed) as info:
            server.call(server.server.command("sp-a", "split.run",
                                              {"model": "lenet", "split": 4, "n": 1}, 60))
        assert "INVALID_ARGUMENT" in str(info.value) and "split 8" in str(info.value)
    finally:
        executor.clear_plans()


def test_a_device_killed_mid_stream_frees_its_slot_and_delays_nobody(server, split, tmp_path):
    orchestrator, fleet = split
    executor = orchestrator.executor
    executor.pop_records()
    executor.clear_plans()
    victim = Fleet(server.address, [AgentSpec("sp-victim", link="up=16kbit,down=16kbit",
                                              power_backend="null")],
                   log_dir=tmp_path, benchmark_s=0.01).start()
    try:
        wait_until(lambda: "sp-victim" in server.server.device_names(), 120, what="the victim")
        # conv1's 18816 bytes at 16 kbit/s: 9 s in 4 KiB chunks, killed after the first.
        doomed = asyncio.run_coroutine_threadsafe(server.server.command(
            "sp-victim", "split.run", {"model": "lenet", "split": 1, "n": 1, "warmup": 0,
                                       "run_id": "doomed"}, 120), server.loop)
        wait_until(lambda: server.server.uploads_in_flight > 0, 60, what="the activation to flow")
        victim.kill("sp-victim")
        with pytest.raises(DeviceDisconnected):
            doomed.result(30)
        wait_until(lambda: server.server.uploads_in_flight == 0, 30, what="the stream to be dropped")
        # B = 2 and the others all offload at once: nobody waits for the victim.
        others = server.call(server.server.broadcast(
            NAMES, "split.run", {"model": "lenet", "split": 0, "n": 2, "warmup": 0,
                                 "run_id": "after", "slots": [1] * 12}, 120))
        assert all(not isinstance(r, Exception) and r["max_abs_diff"] < 1e-4
                   for r in others.values())
        assert {r.device for r in executor.records} == set(NAMES)
        assert executor.active == 0
    finally:
        victim.stop()
        executor.pop_records()
