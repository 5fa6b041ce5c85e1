"""The split-inference workload's contract (paper 004).

``split.profile`` measures what the solver needs from a device (the local
delay of every layer, the bytes at every split point, its computing power);
``split.run`` executes a decided strategy: for each input, the head here,
the activation streamed over the Infer RPC to the server's handler of the
run (``split/<run-id>``: :func:`infer_handler`), the tail's result back. :class:`InferMeta` is what a request
announces in its meta; the server checks all of it before anything runs.
"""
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from edgebed.proto.contracts.base import CommandSpec, MetaRecord, PhaseSummary, Record, RunKeys

INFER_HANDLER = "split"  # the prefix of the server's Infer handlers for split runs


def infer_handler(run_id: str) -> str:
    """The name of the server's Infer handler of run ``run_id``, which its
    devices put in their requests' meta: run-scoped, so split runs on disjoint
    devices of one server each have their own."""
    return f"{INFER_HANDLER}/{run_id}"


class SplitKeys(RunKeys):
    workload = "split"

    def request(self, tag: str, device: str, index: object) -> str:
        return self.key(tag, device, index)


@dataclass(frozen=True)
class InferMeta(MetaRecord):
    """One split request: which model (bit-identical on both ends from its
    seed), where it was split (eq. 18) and, unless the server already holds
    the device's decided strategy, the slots of its offloaded layers (eq. 14)."""

    model: str
    split: int
    seed: int
    run_id: str
    tag: str
    index: int                # the inference's number (negative: warm-up)
    input_size: Optional[int] = None
    slots: Optional[Tuple[int, ...]] = None


@dataclass(frozen=True)
class ModelRef(Record):
    """A split model both ends build the same from its name, seed and input side."""

    name: str
    seed: int
    input_size: Optional[int]


@dataclass(frozen=True)
class ProfileIns(Record):
    run_id: str
    model: ModelRef
    repeats: int              # in-context passes; T^lo is their median
    warmup: int               # untimed passes first
    gap_s: float              # idle before each pass, as before each inference
    power_s: float            # back-to-back passes metered for P^lo (eq. 12)
    isolated: bool            # also time layers one by one (the delay model's recipe)
    input_seed: int = 0


@dataclass(frozen=True)
class ProfileRes(Record):
    model: str
    num_layers: int
    input_shape: List[int]
    t_local_s: List[float]            # T^lo_{n,m}, per layer
    forward_s: float
    t_local_isolated_s: List[float]   # empty unless asked
    out_bytes: List[float]            # O_{n,m} at every split point 0..M (eq. 8)
    result_bytes: float
    p_local_w: float                  # P^lo_n
    power_backend: str
    provenance: str
    low_confidence: bool
    profile: PhaseSummary
    output_checksum: float


@dataclass(frozen=True)
class RunIns(Record):
    run_id: str
    tag: str
    model: ModelRef
    split: int                # m*: layers 1..m* here (M: all local)
    slots: List[int]          # the offloaded layers' slots (eq. 14)
    uplink_bps: float
    n: int                    # timed inferences
    warmup: int               # untimed inferences first (stream setup, caches)
    gap_s: float              # idle before each inference
    timeout_s: float
    input_seed: int = 0
    verify: bool = True       # check head + tail == the whole forward, once

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")


@dataclass(frozen=True)
class InferenceRow(Record):
    """One timed inference, on the device's clock (seconds)."""

    key: str
    e2e_s: float
    head_s: float
    head_j: float
    upload_s: float           # request encoded and paced out
    wait_s: float             # last request frame out to first reply frame in
    download_s: float         # the reply, receiver side
    up_bytes: int
    down_bytes: int
    edges_s: float            # outside the head and the call: meter window edges
    provenance: str
    prediction: int
    call_s: float = 0.0       # the whole Infer round trip (0: all local)


@dataclass(frozen=True)
class RunRes(Record):
    model: str
    split: int
    n: int
    uplink_bps: float
    power_backend: str
    inferences: List[InferenceRow] = field(default_factory=list)
    max_abs_diff: Optional[float] = None


PROFILE = CommandSpec("split.profile", ProfileIns, ProfileRes)
RUN = CommandSpec("split.run", RunIns, RunRes)
