"""The transfer-learning workload's contract (paper 000, section III-A).

Steps 1, 3 and 5 run on the devices: ``tl.prepare`` (load the partition,
train the autoencoder), ``tl.profile`` (what JUDBA needs), ``tl.encode_upload``
(encode, and upload latents at the allocated rate if chosen) and
``tl.await_model`` (idle until the edge CNN is offered, download, fine-tune
if not an uploader, classify the local test set).
"""
from dataclasses import dataclass
from typing import List, Optional

from edgebed.proto.contracts.base import (
    CommandSpec,
    MetaRecord,
    PhaseSummary,
    Record,
    RunKeys,
    check_share,
)


class TLKeys(RunKeys):
    workload = "tl"

    def latents(self, tag: str, device: str) -> str:
        return self.key("latents", tag, device)

    def model(self, tag: str) -> str:
        return self.key("cnn", tag)


@dataclass(frozen=True)
class LatentMeta(MetaRecord):
    """What travels with uploaded latents: the lambda they were encoded with."""

    lam: int
    samples: int


@dataclass(frozen=True)
class PrepareIns(Record):
    run_id: str
    index: int                # this device's share of the data
    num_devices: int
    lam: int                  # compression ratio lambda (1: raw images)
    dataset: str
    data_root: Optional[str]
    partition: str            # "iid" or "noniid"
    max_samples: Optional[int]
    seed: int
    ae_epochs: int
    ae_lr: float

    def __post_init__(self) -> None:
        check_share(self.partition, self.index, self.num_devices)
        if self.lam < 1:
            raise ValueError(f"lam must be >= 1, got {self.lam}")


@dataclass(frozen=True)
class PrepareRes(Record):
    train_samples: int
    test_samples: int
    latent_shape: List[int]
    num_classes: int
    encoder_macs: int         # c of eq. (5): multiply-accumulates per sample
    ae_loss: Optional[float] = None       # lambda > 1 only
    ae_train: Optional[PhaseSummary] = None


@dataclass(frozen=True)
class ProfileIns(Record):
    run_id: str
    idle_s: float             # how long the idle power is measured


@dataclass(frozen=True)
class ProfileRes(Record):
    encode_s_per_sample: float
    encode_j_per_sample: float
    idle_power_w: float
    tune_epoch_s: float       # scaled from a measured sample epoch: an estimate
    tune_epoch_j: float
    latent_bytes_per_sample: int
    provenance: str
    tune_provenance: str
    power_backend: str


@dataclass(frozen=True)
class EncodeUploadIns(Record):
    run_id: str
    upload: bool              # rho_i
    key: str
    uplink_bps: float         # the allocated rate w_i B log2(1 + P_i h_i / N0), eq. (6)


@dataclass(frozen=True)
class EncodeUploadRes(Record):
    encode: PhaseSummary
    samples: int
    upload: Optional[PhaseSummary] = None   # uploaders only
    bytes: int = 0
    rate_bps: float = 0.0     # achieved


@dataclass(frozen=True)
class AwaitModelIns(Record):
    run_id: str
    key: str
    wait_s: float             # as long as the server may train the edge CNN
    tune: bool                # fine-tune (devices that did not upload)
    tune_epochs: int


@dataclass(frozen=True)
class AwaitModelRes(Record):
    idle: PhaseSummary
    download: PhaseSummary
    infer: PhaseSummary
    accuracy: float
    tune: Optional[PhaseSummary] = None


PREPARE = CommandSpec("tl.prepare", PrepareIns, PrepareRes)
PROFILE = CommandSpec("tl.profile", ProfileIns, ProfileRes)
ENCODE_UPLOAD = CommandSpec("tl.encode_upload", EncodeUploadIns, EncodeUploadRes)
AWAIT_MODEL = CommandSpec("tl.await_model", AwaitModelIns, AwaitModelRes)
