"""Gradient-based federated edge learning rounds on real agents (paper 003).

Each round (section II-A): the allocator gives every device its batch size
B_k and its uplink/downlink time-slot shares tau_k / T_f, which become the
rates its transfers are shaped to; devices compute and upload b-bit
gradients; the server aggregates what arrived before the deadline (eq. 1,
weights renormalized), quantizes the global gradient, offers it to each
device at its downlink rate, and applies eq. (2) to its own copy with the
learning rate scaled by sqrt(B). Every device must then hold the server's
exact weights: the round checks the parameter hashes.

Schemes are allocators plugged into this one loop (``RoundPlan`` makers),
not copies of it. Model-based FEEL (FedAvg) is the same loop with devices
uploading a model delta after a local epoch and eta = -1 (w + mean delta).
"""
import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch

from edgebed.models.datasets import load_dataset, standardize
from edgebed.models.feel.nets import (
    apply_global_gradient,
    build_model,
    flat_buffers,
    flat_parameters,
    has_batchnorm,
    parameter_hash,
    scaled_lr,
    set_flat_buffers,
)
from edgebed.models.partition import split_holdout
from edgebed.proto.codec import decode_transfer, iter_frames
from edgebed.proto.errors import CodecError
from edgebed.proto.quantize import quant_for_bits
from edgebed.server.core import EdgeServer
from edgebed.server.workloads.template import Orchestrator
from edgebed.server.workloads.feel.solver.model import FeelProblem, FeelSolution, payload_bits
from edgebed.server.telemetry import measured_span
from edgebed.server.transfers import ReceivedTransfer

logger = logging.getLogger(__name__)

PREFIX = "feel/"


@dataclass(frozen=True)
class FeelConfig:
    model: str = "cnn"
    dataset: str = "mnist5k"
    data_root: Optional[str] = None
    scheme: str = "iid"               # data partition: "iid" or "noniid" (section VI-A)
    max_samples: Optional[int] = None
    holdout: float = 0.2              # share of the data the server keeps for testing
    seed: int = 0
    bits: int = 32                    # b, gradient quantization (32 = raw float32)
    base_lr: float = 0.02
    reference_batch: int = 32         # eta = base_lr sqrt(B / reference_batch)
    deadline_s: float = 120.0         # a round aggregates what arrived by then
    run_id: str = "feel"

    def __post_init__(self) -> None:
        if not 1 <= self.bits <= 32:
            raise ValueError(f"bits must be in 1..32, got {self.bits}")
        if not 0.0 < self.holdout < 1.0:
            raise ValueError(f"holdout must be in (0, 1), got {self.holdout}")


@dataclass(frozen=True)
class RoundPlan:
    """What an allocator decides for one round."""

    batch: Dict[str, int]
    up_rate_bps: Dict[str, float]
    down_rate_bps: Dict[str, float]
    predicted_s: float = 0.0          # the model's round latency, 0 if none
    mode: str = "gradient"            # or "model" (FedAvg: local epoch, delta upload)
    local_epochs: int = 1             # "model" mode: epochs before the upload
    bits: Optional[int] = None        # b of the uploads and the broadcast; None: FeelConfig.bits

    @classmethod
    def from_solution(cls, names: List[str], solution: FeelSolution, **kwargs) -> "RoundPlan":
        """A solver's allocation (arrays in ``names`` order) as a round plan."""
        return cls(batch=dict(zip(names, (int(b) for b in solution.batch_size))),
                   up_rate_bps=dict(zip(names, solution.uplink_rate_bps)),
                   down_rate_bps=dict(zip(names, solution.downlink_rate_bps)),
                   predicted_s=solution.round_latency_s, **kwargs)


@dataclass
class RoundRecord:
    round: int
    seconds: float                    # measured, server clock
    predicted_s: float
    arrived: List[str]
    missing: Dict[str, str]
    global_batch: int
    hashes_agree: bool
    loss: float
    slowest_work_s: float             # slowest device's compute + upload + download + update
    per_device: Dict[str, dict] = field(default_factory=dict)


class FederatedLearning(Orchestrator[RoundRecord]):
    def __init__(self, server: EdgeServer, devices: List[str], config: FeelConfig) -> None:
        super().__init__(server, devices)
        self.config = config
        self.round = 0
        self.profiles: Dict[str, dict] = {}
        self.samples: Dict[str, int] = {}
        images, labels = load_dataset(config.dataset, config.data_root,
                                      max_samples=config.max_samples, seed=config.seed)
        images = standardize(images)  # the devices do the same (feel.setup)
        _, test = split_holdout(labels, config.holdout, config.seed)
        self.test_x, self.test_y = images[test], labels[test]
        torch.manual_seed(config.seed)
        self.model = build_model(config.model, int(labels.max()) + 1, tuple(images.shape[1:]))
        self.num_parameters = int(flat_parameters(self.model).numel())
        # BatchNorm running statistics travel with each gradient (0: none).
        self.num_buffers = int(flat_buffers(self.model).numel()) if has_batchnorm(self.model) else 0
        self.hash = parameter_hash(self.model)

    @property
    def keys(self) -> str:
        """Prefix of every key this run offers or receives."""
        return f"{PREFIX}{self.config.run_id}/"

    @property
    def weights_key(self) -> str:
        return f"{self.keys}weights"

    def _offer_weights(self) -> None:
        self.server.offer(self.weights_key, {"weights": flat_parameters(self.model)})

    async def configure(self, profiles: Optional[Dict[str, dict]] = None) -> None:
        """Set every device up from the server's weights; profile them unless
        ``profiles`` (from an earlier run of the same model on the same devices) are given."""
        cfg = self.config
        self._offer_weights()
        common = {"model": cfg.model, "dataset": cfg.dataset, "data_root": cfg.data_root,
                  "scheme": cfg.scheme, "max_samples": cfg.max_samples, "seed": cfg.seed,
                  "holdout": cfg.holdout, "num_devices": len(self.devices),
                  "weights_key": self.weights_key, "run_id": cfg.run_id}
        results = self.keep_successes(await self.server.broadcast(
            self.devices, "feel.setup", common, cfg.deadline_s,
            {n: {"index": i} for i, n in enumerate(self.devices)}), "feel.setup")
        for name, result in results.items():
            if result["hash"] != self.hash:
                raise CodecError(f"{name} started from different weights than the server")
            self.samples[name] = result["samples"]
        missing = [d for d in self.devices if d not in (profiles or {})]
        self.profiles = {d: profiles[d] for d in self.devices if d not in missing}
        if missing:
            self.profiles.update(self.keep_successes(await self.server.broadcast(
                missing, "feel.profile", {"run_id": cfg.run_id}, cfg.deadline_s),
                "feel.profile"))
        self.server.add_upload_validator(f"{self.keys}grad/", self._validate)

    def problem(self, uplink_bps: Dict[str, float], downlink_bps: Dict[str, float],
                bits: Optional[int] = None) -> FeelProblem:
        """The allocation problem of these devices: their measured eq. (9) fits
        (from configure's profiles), the given full-frame link rates R_k^U and
        R_k^D, and b-bit payloads (default: the config's b)."""
        names = list(self.devices)
        return FeelProblem(
            cpu_s_per_sample=tuple(max(self.profiles[n]["seconds_per_sample"], 1e-6) for n in names),
            cpu_fixed_s=tuple(max(self.profiles[n]["fixed_s"], 0.0) for n in names),
            update_s=tuple(self.profiles[n]["update_s"] for n in names),
            uplink_rate_bps=tuple(float(uplink_bps[n]) for n in names),
            downlink_rate_bps=tuple(float(downlink_bps[n]) for n in names),
            gradient_bits=payload_bits(self.num_parameters, self.config.bits if bits is None else bits),
            dataset_size=tuple(self.samples[n] for n in names))

    def _validate(self, received: ReceivedTransfer) -> None:
        """Reject gradients of the wrong size or round: the round goes on without them."""
        grad = received.tensors.get("grad")
        if grad is None:
            raise CodecError("a gradient upload needs a tensor named 'grad'")
        if grad.numel() != self.num_parameters:
            raise CodecError(f"gradient has {grad.numel()} elements, the model has "
                             f"{self.num_parameters}")
        if self.num_buffers:
            buffers = received.tensors.get("buffers")
            if buffers is None or buffers.numel() != self.num_buffers:
                raise CodecError(f"a BatchNorm model's upload needs 'buffers' of "
                                 f"{self.num_buffers} elements")
        if received.meta.get("round") != str(self.round):
            raise CodecError(f"gradient for round {received.meta.get('round')!r} arrived "
                             f"during round {self.round}")

    def close(self) -> None:
        self.server.remove_upload_validator(f"{self.keys}grad/")
        self.server.forget(self.keys)

    async def run(self, plan: RoundPlan) -> RoundRecord:
        """One communication round under an allocator's plan."""
        cfg = self.config
        n = self.round
        names = [d for d in self.devices if d in plan.batch]
        bits = cfg.bits if plan.bits is None else plan.bits
        grad_key = {d: f"{self.keys}grad/{n}/{d}" for d in names}
        global_key = f"{self.keys}global/{n}"
        # FedAvg's local steps use the same sqrt(B) learning-rate law per device.
        per_device = {d: {"batch": plan.batch[d], "rate_bps": plan.up_rate_bps[d],
                          "grad_key": grad_key[d],
                          "local_lr": scaled_lr(cfg.base_lr, plan.batch[d], cfg.reference_batch)}
                      for d in names}
        common = {"round": n, "global_key": global_key, "weights_key": self.weights_key,
                  "expected_hash": self.hash, "bits": bits, "mode": plan.mode,
                  "local_epochs": plan.local_epochs,
                  "run_id": cfg.run_id, "wait_s": cfg.deadline_s}
        start = time.perf_counter()
        commands = asyncio.ensure_future(self.server.broadcast(
            names, "feel.round", common, cfg.deadline_s * 2, per_device))
        arrivals = await asyncio.gather(*(
            self.server.receive(d, grad_key[d], cfg.deadline_s) for d in names),
            return_exceptions=True)
        arrived = {d: r for d, r in zip(names, arrivals) if not isinstance(r, BaseException)}
        missing = {d: f"no gradient by the deadline: {r}" for d, r in zip(names, arrivals)
                   if isinstance(r, BaseException)}
        if not arrived:
            raise CodecError(f"round {n}: no gradient arrived ({missing})")
        with measured_span(self.server, cfg.run_id, "aggregate", round=n):
            global_grad, global_batch = self._aggregate(arrived, "grad")
            # BatchNorm running stats move on each device; averaging them with
            # the same weights keeps every copy identical (models.feel_models).
            buffers = self._aggregate(arrived, "buffers")[0] if self.num_buffers else None
        lr = -1.0 if plan.mode == "model" else scaled_lr(cfg.base_lr, global_batch,
                                                         cfg.reference_batch)
        quant = quant_for_bits(bits)
        payload = {"grad": global_grad}
        if buffers is not None:
            payload["buffers"] = buffers  # float32, never quantized: it is tiny
        # Encoded once; each device downloads it at its own downlink slot rate.
        offer = self.server.offer(global_key, payload, rate_bps=dict(plan.down_rate_bps),
                                  quant={"grad": quant} if quant else None,
                                  meta={"lr": repr(lr)})
        sent = global_grad if quant is None else self._as_received(offer)
        apply_global_gradient(self.model, sent, lr)
        if buffers is not None:
            set_flat_buffers(self.model, buffers)
        self.hash = parameter_hash(self.model)
        self.round += 1
        results = await commands
        seconds = time.perf_counter() - start
        record = self._record(n, plan, names, arrived, missing, results, global_batch, seconds)
        if record.missing or not record.hashes_agree:
            # Someone will rejoin next round: offer the weights they must load.
            self._offer_weights()
        return record

    def _aggregate(self, arrived: Dict[str, ReceivedTransfer], name: str):
        """eq. (1): sum_k B_k x_k / sum_k B_k over the uploads that arrived."""
        total = sum(int(r.meta["batch"]) for r in arrived.values())
        acc = None
        for r in arrived.values():
            term = r.tensors[name].double() * (int(r.meta["batch"]) / total)
            acc = term if acc is None else acc + term
        return acc.float(), total

    @staticmethod
    def _as_received(offer) -> torch.Tensor:
        """The quantized global gradient exactly as the devices will decode it."""
        frames = iter_frames(offer.encoded, device_id="", key=offer.key)
        return decode_transfer(frames).tensors["grad"]

    def _record(self, n, plan, names, arrived, missing, results, global_batch,
                seconds) -> RoundRecord:
        per_device, hashes, losses, work = {}, [], [], []
        for d in names:
            result = results.get(d)
            if isinstance(result, BaseException) or result is None:
                missing.setdefault(d, f"round command failed: {result}")
                continue
            per_device[d] = result
            hashes.append(result["hash"])
            losses.append(result["loss"])
            work.append(sum(result[p]["seconds"] for p in ("compute", "upload", "download",
                                                            "update")))
        agree = bool(hashes) and all(h == self.hash for h in hashes)
        if not agree:
            logger.error("round %d: device weights differ from the server's", n)
        for d, reason in missing.items():
            logger.warning("round %d: %s left out: %s", n, d, reason)
        return RoundRecord(
            round=n, seconds=seconds, predicted_s=plan.predicted_s, arrived=sorted(arrived),
            missing=missing, global_batch=global_batch, hashes_agree=agree,
            loss=sum(losses) / len(losses) if losses else float("nan"),
            slowest_work_s=max(work) if work else 0.0, per_device=per_device)

    def test_accuracy(self) -> float:
        self.model.eval()
        with torch.no_grad():
            correct = 0
            for i in range(0, self.test_y.numel(), 500):
                out = self.model(self.test_x[i:i + 500])
                correct += int((out.argmax(1) == self.test_y[i:i + 500]).sum())
        return correct / self.test_y.numel()

