"""Federated rounds on real agents: identical weights, faults, rejoin."""
import dataclasses

import grpc
import pytest
import torch

from edgebed.proto.contracts.feel import GradMeta
from edgebed.server.workloads.feel.orchestrator import FederatedLearning, FeelConfig, RoundPlan
from edgebed.testbed import AgentSpec
from tests.helpers import refused_upload, workload_on_fleet

NAMES = ["fl-a", "fl-b", "fl-c"]
CONFIG = FeelConfig(model="lenet", max_samples=900, deadline_s=20.0, run_id="fl-test", bits=8)


def plan(batch=8, up=None, names=NAMES):
    return RoundPlan(batch={n: batch for n in names},
                     uplink_bps={n: (up or {}).get(n, 0.0) for n in names},
                     downlink_bps={n: 0.0 for n in names})


@pytest.fixture(scope="module")
def federation(server, tmp_path_factory):
    with workload_on_fleet(server, FederatedLearning, CONFIG,
                           [AgentSpec(n, power_backend="null") for n in NAMES],
                           tmp_path_factory.mktemp("fl-agents")) as running:
        yield running


def test_weights_are_bit_identical_after_every_round(server, federation):
    fl, _ = federation
    hashes = set()
    for _ in range(3):
        record = server.call(fl.run(plan()), 120)
        assert record.arrived == sorted(NAMES)
        assert record.hashes_agree
        assert {r.hash for r in record.per_device.values()} == {fl.hash}
        hashes.add(fl.hash)
    assert len(hashes) == 3  # the model really changed each round


def test_model_based_rounds_send_full_precision_models(server, federation):
    """FedAvg's plan carries bits=32 over an 8-bit config: the model delta goes
    up unquantized (4 bytes per parameter), gradients keep their b bits."""
    fl, _ = federation
    model_plan = RoundPlan(batch={n: 16 for n in NAMES}, uplink_bps={n: 0.0 for n in NAMES},
                           downlink_bps={n: 0.0 for n in NAMES}, mode="model", bits=32)
    record = server.call(fl.run(model_plan), 120)
    assert record.hashes_agree
    assert record.arrived == sorted(NAMES)
    assert all(r.upload_bytes >= 4 * fl.num_parameters for r in record.per_device.values())
    record = server.call(fl.run(plan()), 120)
    assert record.hashes_agree
    assert all(r.upload_bytes < 2 * fl.num_parameters for r in record.per_device.values())


def test_a_solver_plan_from_the_measured_profiles_runs(server, federation):
    """configure's profiles + link rates -> the proposed allocation -> one round."""
    from edgebed.server.workloads.feel.solver.solve import allocate
    fl, _ = federation
    rates = {n: 50e6 for n in NAMES}
    problem = fl.problem(rates, rates)
    assert problem.gradient_bits == 8 * fl.num_parameters  # s = b p with the config's b = 8
    assert problem.dataset_size == tuple(fl.samples[n] for n in fl.devices)
    solution = allocate(problem, "proposed")
    round_plan = fl.plan(solution)
    assert sum(round_plan.batch.values()) == sum(solution.batch_size)
    record = server.call(fl.run(round_plan), 120)
    assert record.hashes_agree
    assert record.global_batch == sum(solution.batch_size)
    assert record.predicted_s == pytest.approx(solution.round_latency_s)


def test_profiles_fit_the_cpu_model(federation):
    fl, _ = federation
    for profile in fl.profiles.values():
        assert profile.seconds_per_sample > 0
        assert profile.r2 <= 1.0


def test_decide_resolves_table2_schemes(federation):
    """decide(scheme, rates) through the scheme table: gradient-based is the
    proposed loop with fixed batches and equal slots, FedAvg sends 32 bits."""
    fl, _ = federation
    rates = {n: 20e6 for n in fl.devices}
    proposed = fl.decide("proposed", uplink_bps=rates, downlink_bps=rates)
    fixed = fl.decide("gradient-based", uplink_bps=rates, downlink_bps=rates, fixed_batch=16)
    fedavg = fl.decide("model-based", uplink_bps=rates, downlink_bps=rates, local_batch=32)
    assert proposed.mode == fixed.mode == "gradient"
    assert set(fixed.batch.values()) == {16}
    assert len(set(fixed.uplink_bps.values())) == 1  # equal slots of equal links
    assert fedavg.mode == "model"
    assert fedavg.bits == 32
    with pytest.raises(ValueError, match="scheme must be one of"):
        fl.decide("greedy", uplink_bps=rates, downlink_bps=rates)


def test_wrong_gradients_are_rejected_and_nothing_is_stored(server, federation):
    fl, _ = federation
    key = fl.keys.grad(fl.round, "fl-a")
    err = refused_upload(server, "fl-a", key, {"grad": torch.zeros(fl.num_parameters + 1)},
                         GradMeta(round=fl.round, batch=8).to_meta())
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"the model has {fl.num_parameters}" in err.details()
    err = refused_upload(server, "fl-a", key, {"grad": torch.zeros(fl.num_parameters)},
                         GradMeta(round=fl.round + 5, batch=8).to_meta())
    assert "arrived during round" in err.details()
    assert ("fl-a", key) not in server.server.inbox.pending()


def test_a_late_device_is_left_out_then_rejoins(server, federation):
    fl, _ = federation
    # fl-c uploads at 20 kbit/s: far past the deadline.
    late = dataclasses.replace(CONFIG, deadline_s=3.0)
    fl.config = late
    record = server.call(fl.run(plan(up={"fl-c": 20e3})), 120)
    assert record.arrived == ["fl-a", "fl-b"]
    assert "fl-c" in record.missing
    fl.config = CONFIG
    record = server.call(fl.run(plan()), 120)
    assert record.arrived == sorted(NAMES)
    assert record.hashes_agree
    assert record.per_device["fl-c"].rejoined is not None


def test_a_dead_device_does_not_stop_the_round(server, federation):
    fl, fleet = federation
    fleet.kill("fl-b")
    record = server.call(fl.run(plan()), 120)
    assert record.arrived == ["fl-a", "fl-c"]
    assert "fl-b" in record.missing
    assert record.hashes_agree


def test_batchnorm_models_stay_identical(server, tmp_path):
    """MobileNetV2's running statistics move on every device; the server
    averages them with the gradients, so the hashes still agree."""
    names = ["bn-a", "bn-b"]
    config = FeelConfig(model="mobilenetv2", max_samples=300, deadline_s=60.0, run_id="bn-test")
    with workload_on_fleet(server, FederatedLearning, config,
                           [AgentSpec(n, power_backend="null") for n in names], tmp_path) as (fl, _):
        record = server.call(fl.run(plan(batch=4, names=names)), 300)
        assert record.arrived == names
        assert record.hashes_agree
        # bn-b misses a round (20 kbit/s: far past the deadline), then rejoins
        # from the offered model, running statistics included: the device
        # refuses to compute on weights whose hash is not the server's.
        fl.config = dataclasses.replace(config, deadline_s=8.0)
        record = server.call(fl.run(plan(batch=4, up={"bn-b": 20e3}, names=names)), 300)
        assert record.arrived == ["bn-a"] and "bn-b" in record.missing
        fl.config = config
        record = server.call(fl.run(plan(batch=4, names=names)), 300)
        assert record.arrived == names, record.missing
        assert record.per_device["bn-b"].rejoined is not None
        assert record.hashes_agree
