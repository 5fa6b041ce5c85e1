"""The transfer-learning pipeline on real agents, small enough for CI."""
import grpc
import pytest
import torch

from edgebed.proto.contracts.tl import LatentMeta
from edgebed.server.workloads.tl.orchestrator import TLConfig, TransferLearning
from edgebed.testbed import AgentSpec
from tests.helpers import refused_upload, workload_on_fleet

TINY = TLConfig(lam=8, max_samples=400, ae_epochs=1, cnn_epochs=1, tune_epochs=1,
                bandwidth_hz=20e6, partition="iid", run_id="tl-test")
NAMES = ["tl-a", "tl-b", "tl-c"]


@pytest.fixture(scope="module")
def pipeline(server, tmp_path_factory):
    specs = [AgentSpec(n, power_backend="utilization:rpi4b",
                       link=f"distance={60 + 40 * i}m,power=0.3W,bandwidth=20MHz")
             for i, n in enumerate(NAMES)]
    with workload_on_fleet(server, TransferLearning, TINY, specs,
                           tmp_path_factory.mktemp("tl-agents")) as running:
        yield running


def test_solver_inputs_come_from_measurements(pipeline):
    tl, _ = pipeline
    problem = tl.problem
    assert problem.num_devices == 3
    assert all(f > 0 for f in problem.cpu_hz)            # from measured encode time
    assert problem.gain[0] > problem.gain[2]              # nearer device, better channel
    assert all(e > 0 for e in problem.encode_energy_j)    # measured (estimated model)


def test_every_decider_decides_on_the_measured_problem(pipeline):
    tl, _ = pipeline
    for scheme in ("proposed", "full", "random"):
        solution = tl.decide(scheme)
        assert sum(solution.rho) >= 1, scheme  # the edge CNN needs an upload


def test_keys_are_run_scoped(pipeline):
    """Two runs on one server never share a key: every key is under tl/<run-id>/."""
    tl, _ = pipeline
    assert tl.keys.latents("t", "tl-a").startswith("tl/tl-test/")
    assert tl.keys.model("t").startswith("tl/tl-test/")


def test_latents_that_do_not_match_lambda_are_rejected(server, pipeline):
    tl, _ = pipeline
    key = tl.keys.latents("bad", "tl-a")
    shape = tuple(tl.prepared["tl-a"].latent_shape)
    wrong = (shape[0] * 2,) + shape[1:]
    meta = LatentMeta(lam=8, samples=5).to_meta()
    err = refused_upload(server, "tl-a", key, {"latents": torch.zeros((5,) + wrong),
                                               "labels": torch.zeros(5, dtype=torch.int64)}, meta)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "do not match lambda 8" in err.details()
    err = refused_upload(server, "tl-a", key, {"latents": torch.zeros((5,) + shape),
                                               "labels": torch.zeros(4, dtype=torch.int64)}, meta)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "4 labels for 5 latent samples" in err.details()
    err = refused_upload(server, "tl-a", key, {"latents": torch.zeros((5,) + shape),
                                               "labels": torch.zeros(5, dtype=torch.int64)},
                         LatentMeta(lam=4, samples=5).to_meta())
    assert "announce lambda 4" in err.details()
    err = refused_upload(server, "tl-a", key, {"latents": torch.zeros((5,) + shape),
                                               "labels": torch.zeros(5, dtype=torch.int64)},
                         {"lambda": "8"})  # the meta of no contract
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'lambda'" in err.details()
    assert ("tl-a", key) not in server.server.inbox.pending()


def test_pipeline_runs_and_predicts_its_latency(server, pipeline):
    tl, _ = pipeline
    run = server.call(tl.run(tl.decide(rho=[1, 1, 0]), "t1"), 300)
    assert run.devices == NAMES
    assert run.T_meas_s > 0
    assert run.T_pred_s > 0
    assert 0.0 <= run.accuracy_uploaders <= 1.0
    assert 0.0 <= run.accuracy_finetuned <= 1.0
    tuned = next(r for r in run.rows if r.device == "tl-c")
    assert tuned.e_tune_j is not None
    assert tuned.e_upload_j is None
    uploader = next(r for r in run.rows if r.device == "tl-a")
    assert uploader.t_comm_s > 0
    assert uploader.e_idle_j > 0


def test_a_device_that_dies_is_excluded_and_the_rest_finish(server, pipeline):
    tl, fleet = pipeline
    fleet.kill("tl-c")
    run = server.call(tl.run(tl.decide(rho=[1, 1, 1]), "t2"), 300)
    assert run.devices == ["tl-a", "tl-b"]
    assert "tl-c" in run.missing
    assert "tl.encode_upload" in run.missing["tl-c"]
    assert run.accuracy_uploaders is not None
