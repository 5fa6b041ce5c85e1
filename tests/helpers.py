"""What the tests share: polling, raw uploads, and a workload on a fleet of
real agent processes (the harness itself is ``edgebed.testbed``)."""
import contextlib
import time
from typing import Iterator, Mapping, Optional, Sequence, Tuple

import grpc
import pytest
import torch

from edgebed.proto import edge_pb2_grpc
from edgebed.proto.channel import CHANNEL_OPTIONS
from edgebed.proto.codec import encode_transfer
from edgebed.testbed import AgentSpec, Fleet, ServerThread


def wait_until(predicate, timeout_s=60.0, interval_s=0.05, what="condition"):
    """Poll ``predicate`` until it holds (behaviour, not timing, is asserted)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out waiting for {what}")


def refused_upload(server: ServerThread, device: str, key: str,
                   tensors: Mapping[str, torch.Tensor],
                   meta: Optional[Mapping[str, str]] = None) -> grpc.RpcError:
    """Upload ``tensors`` with a bare stub (as any client could) and return
    the error the server answered with; fails if it accepted them."""
    with grpc.insecure_channel(server.address, options=CHANNEL_OPTIONS) as channel:
        stub = edge_pb2_grpc.EdgeServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Upload(encode_transfer(tensors, device_id=device, key=key, meta=dict(meta or {})))
    return info.value


@contextlib.contextmanager
def workload_on_fleet(server: ServerThread, cls, config, specs: Sequence[AgentSpec], log_dir,
                      timeout_s: float = 300.0) -> Iterator[Tuple[object, Fleet]]:
    """``specs`` as agent processes of ``server`` and ``cls(server, names,
    config)`` configured on them (its ``async with``); yields the
    orchestrator and the fleet, and closes both."""
    fleet = Fleet(server.address, specs, log_dir=log_dir, benchmark_s=0.05).start()
    try:
        before = {r.name for r in server.run(server.server.registry.connected)}
        names = [s.name for s in specs]
        fleet.wait_registered(server, len(before | set(names)), 120)
        orchestrator = cls(server.server, names, config)
        server.call(orchestrator.__aenter__(), timeout_s)
        try:
            yield orchestrator, fleet
        finally:
            server.call(orchestrator.__aexit__(None, None, None), 30)
    finally:
        fleet.stop()
