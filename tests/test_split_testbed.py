"""Split inference (paper 004) on real agent processes: profile, decide, run,
and the faults (bad model or split, a device killed mid-stream)."""
import asyncio

import pytest

from edgebed.proto.contracts import split as contract
from edgebed.server.errors import CommandFailed, DeviceDisconnected
from edgebed.server.workloads.split.orchestrator import SplitConfig, SplitInference
from edgebed.testbed import AgentSpec, Fleet
from tests.helpers import wait_until, workload_on_fleet

NAMES = ["sp-a", "sp-b", "sp-c"]
LINKS = ["up=20Mbit,down=50Mbit", "up=5Mbit,down=10Mbit", "up=1Mbit,down=2Mbit"]
TINY = SplitConfig(model="lenet", input_size=None, n_inferences=3, warmup=1, profile_repeats=3,
                   gap_s=0.0, slots_h=4, t_d_s=0.04, parallel_limit=2, run_id="split-test")


LENET_LAYERS = 12


def run_ins(split, model="lenet", n=1, warmup=0, tag="t", slots=(), uplink_bps=0.0,
            run_id=TINY.run_id):
    """A split.run of the module's run (its executor serves split/<run-id>)."""
    return contract.RunIns(run_id=run_id, tag=tag, model=contract.ModelRef(model, 0, None),
                           split=split, slots=list(slots), uplink_bps=uplink_bps, n=n,
                           warmup=warmup, gap_s=0.0, timeout_s=60.0)


@pytest.fixture(scope="module")
def split(server, tmp_path_factory):
    specs = [AgentSpec(n, link=link, power_backend="utilization:rpi4b")
             for n, link in zip(NAMES, LINKS)]
    with workload_on_fleet(server, SplitInference, TINY, specs,
                           tmp_path_factory.mktemp("split-agents")) as running:
        yield running


def test_the_solver_gets_measured_inputs(split):
    orchestrator, _ = split
    problem = orchestrator.problem
    assert problem.num_devices == 3 and problem.parallel_limit == 2
    for name, dev in zip(orchestrator.problem_devices, problem.devices):
        profile = orchestrator.profiles[name]
        assert dev.num_layers == LENET_LAYERS
        assert list(dev.t_local_s) == profile.t_local_s
        assert all(t > 0 for t in profile.t_local_s)
        assert dev.out_bytes[0] == 4 * 28 * 28
        assert dev.uplink_bps == orchestrator.server.link(name).uplink_bps > 0
        assert profile.p_local_w > 0
        assert profile.provenance == "estimated"
    assert (problem.devices[0].t_server_s > 0).all()


def test_the_decision_runs_for_real_and_is_measured_beside_its_prediction(server, split):
    orchestrator, _ = split
    for scheme in ("tpos-uai", "all-offload"):
        run = server.call(orchestrator.run(orchestrator.decide(scheme), scheme), 300)
        assert {r.device for r in run.rows} == set(NAMES)
        assert not run.missing
        assert run.max_computing <= 2
        assert run.max_active <= 2
        for row in run.rows:
            assert row.e2e_s > 0
            assert row.e2e_pred_s > 0
            if row.split < LENET_LAYERS:  # head + tail on two machines == the full forward
                assert row.max_abs_diff < 1e-4
                assert row.server_s >= row.server_pred_s  # released at the end of h_max
        offloaded = [i for i in run.inferences if i.overhead_s is not None]
        assert len(offloaded) == 3 * sum(r.split < LENET_LAYERS for r in run.rows)
        assert all(i.server_s > 0 for i in offloaded)
        assert all(i.download_s > 0 for i in offloaded)
        assert run.pred_error >= 0
    assert run.chosen_splits == {n: 0 for n in NAMES}
    assert run.overhead_ms is not None


def test_the_schemes_come_from_one_table(split):
    orchestrator, _ = split
    with pytest.raises(ValueError, match="scheme must be one of"):
        orchestrator.decide("greedy")


def test_unknown_model_or_split_out_of_range_fails_before_running(server, split):
    for request, words in ((run_ins(1, model="lenet9"), ["lenet9", "known models"]),
                           (run_ins(13), ["13", "0..12"])):
        with pytest.raises(CommandFailed) as info:
            server.call(server.server.call("sp-a", contract.RUN, request, 60))
        for word in words:
            assert word in str(info.value)


def test_an_all_local_run_sends_nothing_and_reports_a_zero_call(server, split):
    res = server.call(server.server.call("sp-a", contract.RUN, run_ins(LENET_LAYERS, n=2), 60))
    assert len(res.inferences) == 2
    for row in res.inferences:
        assert row.e2e_s > 0 and row.head_s > 0
        assert (row.upload_s, row.wait_s, row.download_s, row.call_s) == (0.0, 0.0, 0.0, 0.0)
        assert (row.up_bytes, row.down_bytes) == (0, 0)
        assert row.edges_s == pytest.approx(row.e2e_s - row.head_s)


def test_a_strategy_the_server_did_not_decide_is_refused(server, split):
    orchestrator, _ = split
    executor = orchestrator.executor
    executor.plan("sp-a", "lenet", 8, (1, 1, 1, 1))
    try:
        with pytest.raises(CommandFailed) as info:
            server.call(server.server.call("sp-a", contract.RUN, run_ins(4), 60))
        assert "INVALID_ARGUMENT" in str(info.value)
        assert "split 8" in str(info.value)
    finally:
        executor.clear_plans()


def test_a_device_killed_mid_stream_frees_its_slot_and_delays_nobody(server, split, tmp_path):
    orchestrator, fleet = split
    executor = orchestrator.executor
    executor.pop_records()
    executor.clear_plans()
    victim = Fleet(server.address, [AgentSpec("sp-victim", power_backend="null")],
                   log_dir=tmp_path, benchmark_s=0.01).start()
    try:
        wait_until(lambda: "sp-victim" in server.server.device_names(), 120, what="the victim")
        # conv1's 18816 bytes at 16 kbit/s: 9 s in 4 KiB chunks, killed after the first.
        doomed = asyncio.run_coroutine_threadsafe(server.server.call(
            "sp-victim", contract.RUN, run_ins(1, tag="doomed", uplink_bps=16e3), 120),
            server.loop)
        wait_until(lambda: server.server.transfers_in_flight > 0, 60, what="the activation to flow")
        victim.kill("sp-victim")
        with pytest.raises(DeviceDisconnected):
            doomed.result(30)
        wait_until(lambda: server.server.transfers_in_flight == 0, 30, what="the stream to be dropped")
        # B = 2 and the others all offload at once: nobody waits for the victim.
        async def everyone():
            return await asyncio.gather(*(server.server.call(
                name, contract.RUN, run_ins(0, n=2, tag="after", slots=[1] * LENET_LAYERS), 120)
                for name in NAMES))

        others = server.call(everyone())
        assert all(r.max_abs_diff < 1e-4 for r in others)
        assert {r.device for r in executor.records} == set(NAMES)
        assert executor.active == 0
    finally:
        victim.stop()
        executor.pop_records()


def test_two_split_runs_on_disjoint_devices_of_one_server_run_at_once(server, tmp_path):
    """Each run's executor is its own Infer handler (split/<run-id>): two
    orchestrators on one server (the Control plane runs disjoint-device runs
    at once) no longer collide on one handler name."""
    from dataclasses import replace

    configs = [replace(TINY, run_id=f"split-{x}", n_inferences=2, warmup=0) for x in "xy"]
    specs = [[AgentSpec(f"sp-{x}", link="up=20Mbit,down=50Mbit", power_backend="null")]
             for x in "xy"]
    with workload_on_fleet(server, SplitInference, configs[0], specs[0], tmp_path / "x") as (a, _), \
            workload_on_fleet(server, SplitInference, configs[1], specs[1], tmp_path / "y") as (b, _):
        assert {a.executor.handler, b.executor.handler} == {"split/split-x", "split/split-y"}

        async def together():
            return await asyncio.gather(a.run(a.decide("all-offload"), "together"),
                                        b.run(b.decide("all-offload"), "together"))

        runs = server.call(together(), 300)
        for run, name in zip(runs, ("sp-x", "sp-y")):
            assert [r.device for r in run.rows] == [name] and not run.missing
            assert run.rows[0].split < LENET_LAYERS and run.rows[0].max_abs_diff < 1e-4
            offloaded = [i for i in run.inferences if i.overhead_s is not None]
            assert len(offloaded) == 2 and all(i.server_s > 0 for i in offloaded)
