"""The federated-edge-learning workload's contract (paper 003, section II-A).

``feel.setup`` loads a device's data and the server's initial weights,
``feel.profile`` measures its gradient latency against the batch size (the
eq. (9) fit), and ``feel.round`` is one communication round's five steps on
the device: compute, quantized upload at the uplink slot's rate, wait,
download of the global gradient, the eq. (2) update.
"""
from dataclasses import dataclass
from typing import Dict, List, Optional

from edgebed.proto.contracts.base import (
    CommandSpec,
    MetaRecord,
    PhaseSummary,
    Record,
    RunKeys,
    check_share,
)

MODES = ("gradient", "model")  # "model": FedAvg's local epochs and a model-delta upload


class FeelKeys(RunKeys):
    workload = "feel"

    @property
    def weights(self) -> str:
        """The server's weights: the start of every device, and of a rejoin."""
        return self.key("weights")

    def grad(self, round: int, device: str) -> str:
        return self.key("grad", round, device)

    @property
    def grad_prefix(self) -> str:
        return self.key("grad") + "/"

    def aggregate(self, round: int) -> str:
        """The global gradient of ``round`` (eq. 1)."""
        return self.key("global", round)


@dataclass(frozen=True)
class GradMeta(MetaRecord):
    """What travels with an uploaded gradient (or FedAvg model delta)."""

    round: int
    batch: int                # B_k: the aggregation weight of eq. (1)


@dataclass(frozen=True)
class AggregateMeta(MetaRecord):
    """What travels with the global gradient: the eq. (2) learning rate
    (-1 for FedAvg's averaged delta: w + mean delta)."""

    lr: float


@dataclass(frozen=True)
class SetupIns(Record):
    run_id: str
    index: int
    num_devices: int
    model: str
    dataset: str
    data_root: Optional[str]
    partition: str
    max_samples: Optional[int]
    holdout: float            # share of the data the server keeps for testing
    seed: int
    weights_key: str
    wait_s: float

    def __post_init__(self) -> None:
        check_share(self.partition, self.index, self.num_devices)


@dataclass(frozen=True)
class SetupRes(Record):
    samples: int
    parameters: int
    hash: str


@dataclass(frozen=True)
class ProfileIns(Record):
    run_id: str
    batches: List[int]
    repeats: int


@dataclass(frozen=True)
class ProfileRes(Record):
    latency_s: Dict[str, float]   # batch size -> measured seconds
    seconds_per_sample: float     # eq. (9) fit
    fixed_s: float
    r2: float
    update_s: float               # one eq. (2) update


@dataclass(frozen=True)
class RoundIns(Record):
    run_id: str
    round: int
    batch: int                # B_k
    uplink_bps: float         # the uplink slot's rate, tau_k / T_f of the frame
    grad_key: str
    global_key: str
    weights_key: str          # for a device that missed a round and must rejoin
    expected_hash: str        # the weights every device must start the round from
    bits: int                 # b: gradient quantization (32: raw float32)
    mode: str
    local_epochs: int         # "model" mode
    local_lr: float           # "model" mode
    wait_s: float             # for the global gradient

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch}")


@dataclass(frozen=True)
class RoundRes(Record):
    round: int
    loss: float
    batch: int
    compute: PhaseSummary
    upload: PhaseSummary
    wait: PhaseSummary
    download: PhaseSummary
    update: PhaseSummary
    upload_bytes: int
    hash: str
    rejoined: Optional[PhaseSummary] = None

    @property
    def work_s(self) -> float:
        """The device's own work in the round (not its wait for the others)."""
        return sum(p.seconds for p in (self.compute, self.upload, self.download, self.update))


SETUP = CommandSpec("feel.setup", SetupIns, SetupRes)
PROFILE = CommandSpec("feel.profile", ProfileIns, ProfileRes)
ROUND = CommandSpec("feel.round", RoundIns, RoundRes)
