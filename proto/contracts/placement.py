"""The placement workload's contract (Zhang et al., "Deep Reinforcement Learning Based Resource
Management for DNN Inference in Industrial IoT", Sections III and IV).

Two roles an agent can take:

- the cloud model store (CCaS): ``placement.store`` trains (or loads) the
  light and heavy DNN of every task type and measures them: accuracy on clean
  and noisy held-out inputs, serialized size, inference time;
  ``placement.push`` uploads one model's bytes to the edge cache (ECaS) at
  R^c.
- a gateway (IGW): ``placement.configure`` empties its model cache, sets its
  capacity S^l, loads the held-out digits its task sources draw from and times
  every model structure on a reference task (Q measured on this node);
  ``placement.slot`` runs one slot of its sources' tasks as decided: each
  task's D real bytes cross the device -> IGW hop at alpha^l B gamma, then
  either the IGW downloads the model if the decision placed it (R^e) and
  infers at its share beta^l, or the task's bytes go on to the edge server at
  alpha^e B^e gamma^e.

A model travels as the bytes of ``torch.save(state_dict)``: exactly S^n on the
wire and in a cache.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from edgebed.proto.contracts.base import CommandSpec, MetaRecord, PhaseSummary, Record, RunKeys

ROLE_LABEL = "role"  # an agent started with --label role=cloud is the cloud model store
CLOUD_ROLE = "cloud"
#: Why a task completed or not, as TaskRes.reason and the server's outcomes say it: ok; late
#: (past T^max); no-model (not at its node: Algorithm 1 found no space, "no-space", or the
#: model could not arrive in time, "late-model"); refused (its model's transfer failed or the
#: cache refused it); lost (its gateway failed).
REASONS = ("ok", "late", "no-model", "no-space", "late-model", "refused", "lost")


class PlacementKeys(RunKeys):
    workload = "placement"

    def model(self, slot: int, model: str, to: str) -> str:
        """A model's bytes in flight to ``to`` ("edge" or a gateway) in ``slot``."""
        return self.key("model", slot, to, model)

    def task(self, slot: int, index: int) -> str:
        """Task ``index``'s input on its way from its gateway to the ECoS."""
        return self.key("task", slot, index)


@dataclass(frozen=True)
class ModelInfo(Record):
    """One model of the catalogue as measured by the cloud store."""

    key: str                  # "<task type>/<light|heavy>"
    task_type: str
    level: int                # 0 light, 1 heavy
    depth: int
    width: int
    hidden: int
    pooled: int
    classes: int
    size_bytes: int           # S^n: torch.save(state_dict) bytes
    acc_clean: float          # P_UL / P_UH on held-out inputs
    acc_noisy: float          # P_DL / P_DH on the same inputs after the noise model
    infer_s: float            # one reference task on the cloud host


@dataclass(frozen=True)
class ModelMeta(MetaRecord):
    """What travels with a model's bytes."""

    model: str
    size_bytes: int


@dataclass(frozen=True)
class TaskMeta(MetaRecord):
    """What travels with a task's input to the ECoS. ``labels`` is the ground
    truth of its digits (one character each), for scoring only: it is not part
    of the task's D bytes."""

    slot: int
    index: int
    task_type: str
    images: int
    labels: str


@dataclass(frozen=True)
class StoreIns(Record):
    run_id: str
    preset: str               # the zoo preset: "tiny", "quick" or "full"
    dataset: str
    data_root: Optional[str]
    seed: int
    noise_draws: int          # noisy accuracy: mean over this many draws of the noise model
    repeats: int              # inference time: median of this many passes


@dataclass(frozen=True)
class StoreRes(Record):
    models: List[ModelInfo]
    trained: bool             # False: loaded from the store's disk cache
    train_s: float
    test_images: int
    test_fraction: float
    max_samples: Optional[int]
    host: str


@dataclass(frozen=True)
class PushIns(Record):
    run_id: str
    model: str
    key: str
    uplink_bps: float         # R^c


@dataclass(frozen=True)
class PushRes(Record):
    upload: PhaseSummary
    bytes: int
    rate_bps: float


@dataclass(frozen=True)
class ConfigureIns(Record):
    run_id: str
    cache_bytes: int          # S^l
    models: List[ModelInfo]   # the catalogue's structures, timed here
    dataset: str
    data_root: Optional[str]
    test_fraction: float
    max_samples: Optional[int]
    seed: int
    repeats: int
    period_s: float = 0.02    # the compute shares' time slice

    def __post_init__(self) -> None:
        if self.cache_bytes < 0:
            raise ValueError(f"cache_bytes must be >= 0, got {self.cache_bytes}")
        if not 0.0 < self.period_s <= 1.0:
            raise ValueError(f"period_s must be in (0, 1], got {self.period_s}")


@dataclass(frozen=True)
class ConfigureRes(Record):
    infer_s: Dict[str, float]  # model key -> median seconds of one reference task, share 1
    test_images: int
    cache_bytes: int
    host: str


@dataclass(frozen=True)
class TaskIns(Record):
    """One task of a slot and what was decided for it."""

    index: int                # k in the problem's device order
    task_type: str
    data_bytes: int           # D
    deadline_s: float         # T^max
    noisy: bool               # theta
    on_gateway: bool          # m
    model: str                # the chosen light or heavy model (phi)
    source_bps: float         # device -> IGW: alpha^l B gamma, eq. (2)
    uplink_bps: float = 0.0   # IGW -> BS: alpha^e B^e gamma^e (ECoS tasks)
    share: float = 0.0        # beta^l (IGW tasks)
    fetch_key: str = ""       # IGW tasks whose model is placed this slot: its download
    seed: int = 0             # of the task's digits and noise

    def __post_init__(self) -> None:
        if not 40 <= self.data_bytes <= 10_000_000:
            raise ValueError(f"data_bytes must be in [40, 1e7], got {self.data_bytes}")
        if not self.deadline_s > 0:
            raise ValueError(f"deadline_s must be positive, got {self.deadline_s}")
        if self.on_gateway and not 0.0 < self.share <= 1.0:
            raise ValueError(f"a task on the gateway needs a share in (0, 1], got {self.share}")
        if self.source_bps < 0 or self.uplink_bps < 0:
            raise ValueError("rates must be >= 0")


@dataclass(frozen=True)
class SlotIns(Record):
    run_id: str
    slot: int
    tasks: List[TaskIns]
    held: List[str]           # what the server's state says this cache holds: others go first
    keep: List[str]           # the models this cache holds after the slot (omega, Step 4)
    fetch_wait_s: float       # how long a download may wait for the edge to offer it


@dataclass(frozen=True)
class TaskRes(Record):
    index: int
    delay_s: float            # IGW tasks: d (9) measured here; ECoS tasks: until the upload was stored
    completed: bool           # IGW tasks only (the server decides for ECoS tasks)
    correct: int              # digits classified right (IGW tasks)
    images: int
    reason: str               # one of REASONS
    source_s: float           # the device -> IGW hop, measured
    uplink_s: float = 0.0     # the IGW -> BS hop (ECoS tasks)
    fetch_s: float = 0.0      # the model's download (placed this slot)
    compute_s: float = 0.0    # inference at the task's share, queueing included


@dataclass(frozen=True)
class SlotRes(Record):
    tasks: List[TaskRes]
    cache: List[str]          # the models cached after Step 4
    held_bytes: int
    peak_bytes: int           # the most the cache held during the slot
    fetched_bytes: int
    refused: List[str] = field(default_factory=list)  # placements refused, with why


STORE = CommandSpec("placement.store", StoreIns, StoreRes)
PUSH = CommandSpec("placement.push", PushIns, PushRes)
CONFIGURE = CommandSpec("placement.configure", ConfigureIns, ConfigureRes)
SLOT = CommandSpec("placement.slot", SlotIns, SlotRes)
