"""Commands every agent serves, whatever its workloads: liveness, a compute
probe and raw tensor moves (the quickstart's and the transport suite's)."""
from dataclasses import dataclass, field
from typing import Dict, Optional

from edgebed.proto.contracts.base import CommandSpec, PhaseSummary, Record, RunKeys
from edgebed.proto.quantize import QuantSpec


class RuntimeKeys(RunKeys):
    workload = "runtime"

    def upload(self, device: str, tag: str = "x") -> str:
        return self.key("up", device, tag)

    def download(self, tag: str = "x") -> str:
        return self.key("down", tag)


@dataclass(frozen=True)
class PingIns(Record):
    pass


@dataclass(frozen=True)
class PingRes(Record):
    name: str
    unix_s: float


@dataclass(frozen=True)
class ComputeIns(Record):
    """``iterations`` float32 matmuls of size ``n``: a measured compute phase."""

    run_id: str
    n: int = 256
    iterations: int = 20
    seed: int = 0
    round: int = 0

    def __post_init__(self) -> None:
        if self.n <= 0 or self.iterations <= 0:
            raise ValueError(f"compute needs positive n and iterations, got {self.n} and "
                             f"{self.iterations}")


@dataclass(frozen=True)
class ComputeRes(Record):
    compute: PhaseSummary
    gflops: float


@dataclass(frozen=True)
class UploadIns(Record):
    """Upload ``size_bytes`` of seeded float32 noise under ``key`` at
    ``uplink_bps`` (0: unshaped), quantized by ``quant`` if given."""

    run_id: str
    key: str
    size_bytes: int
    uplink_bps: float
    seed: int = 0
    round: int = 0
    quant: Optional[QuantSpec] = None

    def __post_init__(self) -> None:
        if self.size_bytes < 4:
            raise ValueError(f"size_bytes must be at least 4, got {self.size_bytes}")


@dataclass(frozen=True)
class UploadRes(Record):
    upload: PhaseSummary
    bytes: int
    seconds: float           # the transfer's own timing (first byte to the server's ack)
    rate_bps: float          # achieved
    uplink_bps: float        # as asked
    checksum: float


@dataclass(frozen=True)
class DownloadIns(Record):
    run_id: str
    key: str
    round: int = 0
    wait_s: float = 0.0


@dataclass(frozen=True)
class DownloadRes(Record):
    download: PhaseSummary
    bytes: int
    seconds: float
    rate_bps: float
    checksums: Dict[str, float] = field(default_factory=dict)


PING = CommandSpec("runtime.ping", PingIns, PingRes)
COMPUTE = CommandSpec("runtime.compute", ComputeIns, ComputeRes)
UPLOAD = CommandSpec("runtime.upload", UploadIns, UploadRes)
DOWNLOAD = CommandSpec("runtime.download", DownloadIns, DownloadRes)
