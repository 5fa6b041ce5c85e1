"""The transfer-learning pipeline on real agents, small enough for CI."""
import grpc
import pytest
import torch

from edgebed.benchmarks.fleet import AgentSpec, Fleet
from edgebed.proto import edge_pb2_grpc
from edgebed.proto.channel import CHANNEL_OPTIONS
from edgebed.proto.codec import encode_transfer
from edgebed.server.workloads.tl.orchestrator import (
    LATENT_PREFIX,
    TLConfig,
    TransferLearning,
)

TINY = TLConfig(lam=8, max_samples=400, ae_epochs=1, cnn_epochs=1, tune_epochs=1,
                bandwidth_hz=20e6, scheme="iid", run_id="tl-test")


@pytest.fixture(scope="module")
def pipeline(server, tmp_path_factory):
    names = ["tl-a", "tl-b", "tl-c"]
    fleet = Fleet(server.address, [AgentSpec(n, power_backend="utilization:rpi4b",
                                             link=f"distance={60 + 40 * i}m,power=0.3W,bandwidth=20MHz")
                                   for i, n in enumerate(names)],
                  log_dir=tmp_path_factory.mktemp("tl-agents"), benchmark_s=0.05).start()
    try:
        fleet.wait_registered(server, 3, 120)
        tl = TransferLearning(server.server, names, TINY)
        server.call(tl.configure(), 300)
        yield tl, fleet
        tl.close()
    finally:
        fleet.stop()


def test_solver_inputs_come_from_measurements(pipeline):
    tl, _ = pipeline
    problem = tl.problem
    assert problem.num_devices == 3
    assert all(f > 0 for f in problem.cpu_hz)            # from measured encode time
    assert problem.gain[0] > problem.gain[2]              # nearer device, better channel
    assert all(e > 0 for e in problem.encode_energy_j)    # measured (estimated model)


def _upload(server, device, key, tensors, meta):
    channel = grpc.insecure_channel(server.address, options=CHANNEL_OPTIONS)
    with channel:
        stub = edge_pb2_grpc.EdgeServiceStub(channel)
        frames = encode_transfer(tensors, device_id=device, key=key, meta=meta)
        with pytest.raises(grpc.RpcError) as info:
            stub.Upload(frames)
    return info.value


def test_latents_that_do_not_match_lambda_are_rejected(server, pipeline):
    tl, _ = pipeline
    key = f"{LATENT_PREFIX}bad/tl-a"
    shape = tuple(tl.prepared["tl-a"]["latent_shape"])
    wrong = (shape[0] * 2,) + shape[1:]
    err = _upload(server, "tl-a", key, {"latents": torch.zeros((5,) + wrong),
                                        "labels": torch.zeros(5, dtype=torch.int64)},
                  {"lambda": "8"})
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "do not match lambda 8" in err.details()
    err = _upload(server, "tl-a", key, {"latents": torch.zeros((5,) + shape),
                                        "labels": torch.zeros(4, dtype=torch.int64)},
                  {"lambda": "8"})
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "4 labels for 5 latent samples" in err.details()
    err = _upload(server, "tl-a", key, {"latents": torch.zeros((5,) + shape),
                                        "labels": torch.zeros(5, dtype=torch.int64)},
                  {"lambda": "4"})
    assert "announce lambda '4'" in err.details()
    assert ("tl-a", key) not in server.server.inbox.pending()


def test_pipeline_runs_and_predicts_its_latency(server, pipeline):
    tl, _ = pipeline
    run = server.call(tl.run(tl.decide(rho=[1, 1, 0]), "t1"), 300)
    assert run.devices == ["tl-a", "tl-b", "tl-c"]
    assert run.T_meas_s > 0 and run.T_pred_s > 0
    assert 0.0 <= run.accuracy_uploaders <= 1.0 and 0.0 <= run.accuracy_finetuned <= 1.0
    tuned = next(r for r in run.rows if r["device"] == "tl-c")
    assert "e_tune_j" in tuned and "e_upload_j" not in tuned
    uploader = next(r for r in run.rows if r["device"] == "tl-a")
    assert uploader["t_comm_s"] > 0 and uploader["e_idle_j"] > 0


def test_a_device_that_dies_is_excluded_and_the_rest_finish(server, pipeline):
    tl, fleet = pipeline
    fleet.kill("tl-c")
    run = server.call(tl.run(tl.decide(rho=[1, 1, 1]), "t2"), 300)
    assert run.devices == ["tl-a", "tl-b"]
    assert "tl-c" in run.missing and "tl.encode_upload" in run.missing["tl-c"]
    assert run.accuracy_uploaders is not None
