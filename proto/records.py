"""Plain dataclass records shared by server and device, with protobuf pairs.

Protobuf objects stay at the edge of the program: handlers, orchestrators and
benchmarks see these dataclasses; only servicers and the agent's gRPC loop
call ``to_proto`` / ``from_proto``. Units are in the field names.
"""
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Dict

from edgebed.proto import edge_pb2 as pb



class Provenance:
    """Where a number came from: the one vocabulary of spans, meters and summaries."""

    MEASURED = "measured"    # a clock, a sensor or a hardware counter
    ESTIMATED = "estimated"  # a model fed with measured activity (CPU time x coefficients)
    MODELED = "modeled"      # a formula (a solver's prediction, a radio with no radio)


PROVENANCES = (Provenance.MEASURED, Provenance.ESTIMATED, Provenance.MODELED)


#: The slowest rate a link may have; 0 means unshaped. Below it a rate is no
#: link (a subnormal one even divides by zero when paced).
MIN_RATE_BPS = 1.0


@dataclass(frozen=True)
class LinkProfile:
    """Default rates of one device's link, and optional radio parameters."""

    uplink_bps: float = 0.0  # 0 = unshaped
    downlink_bps: float = 0.0
    distance_m: float = 0.0
    tx_power_w: float = 0.0
    bandwidth_hz: float = 0.0

    def check(self) -> "LinkProfile":
        """This profile, or ValueError naming the first field that makes no
        sense: a rate is 0 (unshaped) or a finite number of at least
        :data:`MIN_RATE_BPS` bit/s; a radio parameter is finite and >= 0
        (0: no radio)."""
        for name in ("uplink_bps", "downlink_bps"):
            rate = getattr(self, name)
            if not (rate == 0 or (math.isfinite(rate) and rate >= MIN_RATE_BPS)):
                raise ValueError(f"{name} must be 0 (unshaped) or a finite rate of at least "
                                 f"{MIN_RATE_BPS:g} bit/s, got {rate!r}")
        for name in ("distance_m", "tx_power_w", "bandwidth_hz"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        return self

    def to_proto(self) -> pb.LinkProfile:
        return pb.LinkProfile(**asdict(self))

    @classmethod
    def from_proto(cls, msg: pb.LinkProfile) -> "LinkProfile":
        return cls(
            uplink_bps=msg.uplink_bps,
            downlink_bps=msg.downlink_bps,
            distance_m=msg.distance_m,
            tx_power_w=msg.tx_power_w,
            bandwidth_hz=msg.bandwidth_hz,
        )


@dataclass(frozen=True)
class CapabilityProfile:
    """What a device told the server about itself when it registered."""

    cpu_model: str = ""
    cpu_cores: int = 0
    cpu_freq_mhz: float = 0.0
    ram_bytes: int = 0
    accelerator: str = "none"
    torch_version: str = ""
    python_version: str = ""
    platform: str = ""
    matmul_gflops: float = 0.0
    conv_gflops: float = 0.0
    power_backend: str = "null"
    cpu_quota: float = 0.0
    link: LinkProfile = field(default_factory=LinkProfile)
    hostname: str = ""
    labels: Dict[str, str] = field(default_factory=dict)  # the agent's own --label k=v

    def check(self) -> "CapabilityProfile":
        """This profile, or ValueError naming the first field that makes no sense: a
        count, size, speed or quota that is negative or not finite (solvers and speed
        classes are built on them), or a link that :meth:`LinkProfile.check` refuses."""
        for name in ("cpu_cores", "ram_bytes", "cpu_freq_mhz", "matmul_gflops", "conv_gflops",
                     "cpu_quota"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        try:
            self.link.check()
        except ValueError as exc:
            raise ValueError(f"link.{exc}") from None
        return self

    def to_proto(self) -> pb.CapabilityProfile:
        fields = asdict(self)
        fields["link"] = self.link.to_proto()
        return pb.CapabilityProfile(**fields)

    @classmethod
    def from_proto(cls, msg: pb.CapabilityProfile) -> "CapabilityProfile":
        return cls(
            cpu_model=msg.cpu_model,
            cpu_cores=msg.cpu_cores,
            cpu_freq_mhz=msg.cpu_freq_mhz,
            ram_bytes=msg.ram_bytes,
            accelerator=msg.accelerator,
            torch_version=msg.torch_version,
            python_version=msg.python_version,
            platform=msg.platform,
            matmul_gflops=msg.matmul_gflops,
            conv_gflops=msg.conv_gflops,
            power_backend=msg.power_backend,
            cpu_quota=msg.cpu_quota,
            link=LinkProfile.from_proto(msg.link),
            hostname=msg.hostname,
            labels=dict(msg.labels),
        )


@dataclass(frozen=True)
class Command:
    """One unit of work the server asks a device's handler registry to run."""

    command_id: str
    kind: str
    args: Dict[str, Any] = field(default_factory=dict)
    timeout_s: float = 0.0

    def to_proto(self) -> pb.Command:
        return pb.Command(
            command_id=self.command_id,
            kind=self.kind,
            args_json=json.dumps(self.args),
            timeout_s=self.timeout_s,
        )

    @classmethod
    def from_proto(cls, msg: pb.Command) -> "Command":
        return cls(
            command_id=msg.command_id,
            kind=msg.kind,
            args=json.loads(msg.args_json) if msg.args_json else {},
            timeout_s=msg.timeout_s,
        )


@dataclass(frozen=True)
class CommandResult:
    """What a handler returned (``ok``) or why it failed."""

    command_id: str
    ok: bool
    result: Dict[str, Any] = field(default_factory=dict)
    error: str = ""
    error_type: str = ""

    def to_proto(self) -> pb.CommandResult:
        return pb.CommandResult(
            command_id=self.command_id,
            ok=self.ok,
            result_json=json.dumps(self.result),
            error=self.error,
            error_type=self.error_type,
        )

    @classmethod
    def from_proto(cls, msg: pb.CommandResult) -> "CommandResult":
        return cls(
            command_id=msg.command_id,
            ok=msg.ok,
            result=json.loads(msg.result_json) if msg.result_json else {},
            error=msg.error,
            error_type=msg.error_type,
        )


@dataclass(frozen=True)
class Span:
    """One measured phase: who, what, when, how many bytes, how much energy.

    ``provenance`` says whether ``energy_j`` (and the timing) was measured by a
    sensor, estimated from a utilization model, or modeled by a formula.
    """

    run_id: str
    phase: str
    device: str
    start_s: float
    end_s: float
    round: int = 0
    start_unix_s: float = 0.0
    bytes: int = 0
    energy_j: float = 0.0
    power_backend: str = "null"
    provenance: str = "measured"
    low_confidence: bool = False
    extra: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.provenance not in PROVENANCES:
            raise ValueError(
                f"provenance {self.provenance!r} is not one of {PROVENANCES}"
            )

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def to_dict(self) -> Dict[str, Any]:
        record = asdict(self)
        record["duration_s"] = self.duration_s
        return record

    def to_proto(self) -> pb.Span:
        return pb.Span(
            run_id=self.run_id,
            round=self.round,
            device=self.device,
            phase=self.phase,
            start_s=self.start_s,
            end_s=self.end_s,
            start_unix_s=self.start_unix_s,
            bytes=self.bytes,
            energy_j=self.energy_j,
            power_backend=self.power_backend,
            provenance=self.provenance,
            low_confidence=self.low_confidence,
            extra_json=json.dumps(self.extra) if self.extra else "",
        )

    @classmethod
    def from_proto(cls, msg: pb.Span) -> "Span":
        return cls(
            run_id=msg.run_id,
            round=msg.round,
            device=msg.device,
            phase=msg.phase,
            start_s=msg.start_s,
            end_s=msg.end_s,
            start_unix_s=msg.start_unix_s,
            bytes=msg.bytes,
            energy_j=msg.energy_j,
            power_backend=msg.power_backend,
            provenance=msg.provenance or "measured",
            low_confidence=msg.low_confidence,
            extra=json.loads(msg.extra_json) if msg.extra_json else {},
        )


@dataclass(frozen=True)
class TransferStats:
    """Every transfer reports bytes, seconds and achieved rate."""

    transfer_id: str
    bytes: int
    seconds: float
    num_tensors: int = 0

    @property
    def rate_bps(self) -> float:
        return 8.0 * self.bytes / self.seconds if self.seconds > 0 else 0.0

    def to_proto(self) -> pb.TransferStats:
        return pb.TransferStats(
            transfer_id=self.transfer_id,
            bytes=self.bytes,
            seconds=self.seconds,
            rate_bps=self.rate_bps,
            num_tensors=self.num_tensors,
        )

    @classmethod
    def from_proto(cls, msg: pb.TransferStats) -> "TransferStats":
        return cls(
            transfer_id=msg.transfer_id,
            bytes=msg.bytes,
            seconds=msg.seconds,
            num_tensors=msg.num_tensors,
        )

