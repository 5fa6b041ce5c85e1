"""The split executor (server side of paper 004's split inference) behind a real
gRPC server: validation before anything runs, the slot schedule, the parallel
limit B for real, and devices whose stream breaks."""
import threading
import time

import grpc
import pytest
import torch
from torch import nn

from edgebed.models.split.nets import SplitModel, build_split_model
from edgebed.proto import edge_pb2 as pb
from edgebed.proto import edge_pb2_grpc
from edgebed.proto.channel import CHANNEL_OPTIONS
from edgebed.proto.codec import decode_transfer, encode_transfer
from edgebed.proto.records import CapabilityProfile
from edgebed.server.workloads.split.executor import SlotConfig, SplitExecutor, infer_handler
from tests.helpers import wait_until

FAST = SlotConfig(slots_h=4, t_d_s=0.02, parallel_limit=2)
DEVICES = ("sx-a", "sx-b", "sx-c", "sx-d", "sx-e", "sx-f")


class Gate(nn.Module):
    """A layer that, once armed, blocks until its event is set."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.event = threading.Event()

    def forward(self, x):
        if self.armed:
            self.event.wait(30)
        return x + 1


class Stamp(nn.Module):
    """A layer that notes when it ran (server clock)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = []

    def forward(self, x):
        self.calls.append(time.perf_counter())
        return x * 2


def gated_model(name="gated"):
    gate, s1, s2 = Gate(), Stamp(), Stamp()
    model = SplitModel(name, [("gate", gate), ("s1", s1), ("s2", s2)], (4,), seed=0)
    s1.calls.clear()
    s2.calls.clear()
    gate.armed = True
    return model, gate, (s1, s2)


@pytest.fixture(scope="module")
def stub(server):
    channel = grpc.insecure_channel(server.address, options=CHANNEL_OPTIONS)
    stub = edge_pb2_grpc.EdgeServiceStub(channel)
    for name in DEVICES:
        stub.Register(pb.RegisterRequest(name=name, profile=CapabilityProfile().to_proto()))
    yield stub
    channel.close()


@pytest.fixture
def install(server):
    made = []

    def make(config=FAST, **kwargs):
        executor = SplitExecutor(config, **{"run_id": "t", **kwargs})
        server.run(executor.install, server.server)
        made.append(executor)
        return executor

    yield make
    for executor in made:
        executor.close()


def frames(x, device="sx-a", key="k", chunk_bytes=1 << 20, **meta):
    """One request with the contract's InferMeta (as raw strings, so a test
    can send what no agent would)."""
    meta = {"seed": "0", "run_id": "t", "tag": "t", "index": "0",
            **{k: str(v) for k, v in meta.items()}}
    meta.setdefault("handler", infer_handler(meta["run_id"]))
    return list(encode_transfer({"x": x}, device_id=device, key=key, meta=meta,
                                chunk_bytes=chunk_bytes))


def infer(stub, x, **kwargs):
    return decode_transfer(stub.Infer(iter(frames(x, **kwargs)))).tensors["y"]


def infer_error(stub, x, **kwargs):
    with pytest.raises(grpc.RpcError) as info:
        infer(stub, x, **kwargs)
    return info.value


LENET = build_split_model("lenet")


def test_head_plus_tail_is_the_full_forward(stub, install):
    install()
    x = torch.rand(2, 1, 28, 28)
    for split in (0, 4, 11):
        y = infer(stub, LENET.run_head(x, split), model="lenet", split=split)
        assert torch.allclose(y, LENET.run_layers(x, 0, LENET.num_layers), atol=1e-5)


def test_shape_mismatch_is_invalid_argument_naming_both_shapes(stub, install):
    executor = install()
    err = infer_error(stub, torch.rand(1, 6, 14, 14), model="lenet", split=4)  # pool1's shape
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "1x6x14x14" in err.details() and "16x10x10" in err.details()
    assert executor.records == [] and executor.layers_run == 0


@pytest.mark.parametrize("meta, words", [
    ({"model": "lenet7", "split": 1}, ["lenet7", "known models", "alexnet"]),
    ({"model": "lenet", "split": 13}, ["13", "0..12"]),
    ({"model": "lenet", "split": -1}, ["-1", "0..12"]),
    ({"model": "lenet", "split": 12}, ["nothing to offload", "0..11"]),
    ({"model": "lenet", "split": "two"}, ["'split'", "'two'"]),
    ({"model": "lenet", "split": 4, "colour": "red"}, ["unknown key", "'colour'"]),
    ({"model": "lenet", "split": 10, "slots": "2,1"}, ["must not decrease"]),
    ({"model": "lenet", "split": 10, "slots": "1,9"}, ["1..4"]),
])
def test_unknown_model_or_split_is_a_clear_error_before_anything_runs(stub, install, meta, words):
    executor = install()
    err = infer_error(stub, torch.rand(1, 84), **meta)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    for word in words:
        assert word in err.details()
    assert executor.records == [] and executor.layers_run == 0


def test_a_request_must_match_the_decided_strategy(stub, install):
    executor = install()
    executor.plan("sx-a", "lenet", 10, (1, 2))
    err = infer_error(stub, torch.rand(1, 120), model="lenet", split=8)
    assert "split 8" in err.details() and "split 10" in err.details()
    y = infer(stub, torch.rand(1, 84), model="lenet", split=10)
    assert y.shape == (1, 10) and executor.records[-1].slots == (1, 2)


def test_each_run_has_its_own_handler(stub, install):
    """split/<run-id>: two runs' executors on one server at once, each serving
    its own run's requests only."""
    first, second = install(run_id="run-a"), install(run_id="run-b")
    assert (first.handler, second.handler) == ("split/run-a", "split/run-b")
    x = torch.rand(1, 84)
    for executor in (first, second):
        infer(stub, x, model="lenet", split=10, run_id=executor.run_id)
        assert [r.run_id for r in executor.records] == [executor.run_id]
    err = infer_error(stub, x, model="lenet", split=10, run_id="run-a", handler="split/run-b")
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "run-a" in err.details() and "split/run-b" in err.details()
    err = infer_error(stub, x, model="lenet", split=10, handler="split")
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "split/run-a" in err.details()
    assert len(second.records) == 1 and second.layers_run == 2


def test_layers_wait_for_their_slots_and_the_result_for_the_last_slot(stub, install):
    config = SlotConfig(slots_h=4, t_d_s=0.2, parallel_limit=2)
    model, gate, (s1, s2) = gated_model()
    gate.event.set()
    executor = install(config, models={"gated": model})
    infer(stub, torch.zeros(1, 4), model="gated", split=0, slots="1,2,4")
    record = executor.records[-1]
    assert record.status == "ok" and not record.overrun
    slot = config.slot_s
    assert s1.calls[0] >= record.arrival_s + 1 * slot   # slot 2 begins
    assert s2.calls[0] >= record.arrival_s + 3 * slot   # slot 4 begins
    assert record.server_s >= 4 * slot == record.predicted_server_s
    assert record.slot_wait_s > 0


def test_never_more_than_B_tails_at_once(stub, install):
    model, gate, _ = gated_model()
    executor = install(SlotConfig(slots_h=2, t_d_s=0.01, parallel_limit=2), models={"gated": model})
    results = {}

    def one(device):
        results[device] = infer(stub, torch.zeros(1, 4), device=device, model="gated", split=0)

    threads = [threading.Thread(target=one, args=(d,)) for d in DEVICES[:5]]
    for t in threads:
        t.start()
    wait_until(lambda: len(executor.records) == 5, 30, what="all five requests to arrive")
    wait_until(lambda: executor.computing == 2, 30, what="two tails computing")
    assert executor.active == 2  # the other three wait for a place
    gate.event.set()
    for t in threads:
        t.join(30)
    assert len(results) == 5 and all(torch.equal(y, torch.full((1, 4), 4.0)) for y in results.values())
    assert executor.max_active == 2 and executor.max_computing == 2
    assert [r.status for r in executor.records] == ["ok"] * 5
    assert sum(r.queue_s > 0 for r in executor.records) >= 3


def test_a_device_gone_mid_upload_holds_no_place_and_delays_nobody(stub, install):
    executor = install(SlotConfig(slots_h=2, t_d_s=0.01, parallel_limit=1))
    x = LENET.run_head(torch.rand(1, 1, 28, 28), 1)               # 6x28x28: 18816 bytes
    parts = frames(x, device="sx-f", key="victim", chunk_bytes=4096, model="lenet", split=1)
    stop = threading.Event()

    def half_then_hang():
        yield from parts[:2]
        stop.wait(30)

    victim = stub.Infer(half_then_hang())
    # B = 1 and the victim is mid-stream: the others go through anyway.
    for device in ("sx-a", "sx-b"):
        assert infer(stub, torch.rand(1, 84), device=device, model="lenet", split=10).shape == (1, 10)
    victim.cancel()
    stop.set()
    with pytest.raises(grpc.RpcError):
        list(victim)
    assert [r.device for r in executor.records] == ["sx-a", "sx-b"]
    assert executor.active == 0 and executor.max_active == 1


def test_a_device_gone_while_computing_frees_its_place_at_once(stub, install):
    model, gate, (s1, s2) = gated_model()
    executor = install(SlotConfig(slots_h=2, t_d_s=0.01, parallel_limit=1), models={"gated": model})
    victim = stub.Infer(iter(frames(torch.zeros(1, 4), device="sx-f", model="gated", split=0)))
    wait_until(lambda: executor.computing == 1, 30, what="the victim's tail to start")
    victim.cancel()
    wait_until(lambda: executor.records[0].status == "cancelled", 30, what="the cancellation")
    assert executor.active == 0  # its place is free before its layer even returns
    done = {}
    other = threading.Thread(target=lambda: done.update(y=infer(
        stub, torch.rand(1, 84), device="sx-a", model="lenet", split=10)))
    other.start()
    wait_until(lambda: executor.active == 1, 30, what="the other device to be admitted")
    gate.event.set()  # the victim's running layer ends; a thread cannot be interrupted
    other.join(30)
    assert done["y"].shape == (1, 10)
    wait_until(lambda: executor.computing == 0, 30, what="the pool to drain")
    assert s1.calls == [] and s2.calls == []  # the victim ran no further layer
    assert executor.max_computing == 1


def test_a_device_gone_while_waiting_for_its_slot_never_runs(stub, install):
    model, gate, (s1, _) = gated_model()
    gate.event.set()
    executor = install(SlotConfig(slots_h=5, t_d_s=50.0, parallel_limit=1), models={"gated": model})
    victim = stub.Infer(iter(frames(torch.zeros(1, 4), device="sx-f", model="gated", split=0,
                                    slots="5,5,5")))
    wait_until(lambda: executor.records, 30, what="the victim's activation to arrive")
    victim.cancel()
    wait_until(lambda: executor.records[0].status == "cancelled", 30, what="the cancellation")
    assert executor.layers_run == 0 and executor.max_active == 0 and s1.calls == []


def test_a_client_cannot_make_the_server_build_models_of_its_choosing(stub, install):
    """A model is built on demand only at the executor's seed and an input size
    it serves: about 50 MB each used to be built for any seed a client named."""
    executor = install()
    before = len(executor._models)
    for meta, words in (({"model": "alexnet", "split": 1, "seed": 7}, ["seed 0", "not seed 7"]),
                        ({"model": "alexnet", "split": 1, "input_size": 999}, ["at 999"])):
        err = infer_error(stub, torch.rand(1, 3), **meta)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        for word in words:
            assert word in err.details()
    assert len(executor._models) == before  # nothing was built
