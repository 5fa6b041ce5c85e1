"""Gradient-based federated edge learning rounds on real agents (paper 003).

Each round (section II-A): the allocator gives every device its batch size
B_k and its uplink/downlink time-slot shares tau_k / T_f, which become the
rates its transfers are shaped to; devices compute and upload b-bit
gradients; the server aggregates what arrived before the deadline (eq. 1,
weights renormalized), quantizes the global gradient, offers it to each
device at its downlink rate, and applies eq. (2) to its own copy with the
learning rate scaled by sqrt(B). Every device must then hold the server's
exact weights: the round checks the parameter hashes.

Schemes are allocators plugged into this one loop (``RoundPlan`` makers,
:data:`SCHEMES`), not copies of it. Model-based FEEL (FedAvg) is the same
loop with devices uploading a model delta after a local epoch and eta = -1
(w + mean delta).
"""
import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional

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
from edgebed.proto.contracts import feel
from edgebed.proto.contracts.base import check_partition
from edgebed.proto.errors import CodecError
from edgebed.proto.quantize import quant_for_bits
from edgebed.server.errors import UnknownDevice, WorkloadError
from edgebed.server.links import rate_bounds
from edgebed.server.solvers.base import resolve
from edgebed.server.telemetry import measured_span
from edgebed.server.transfers import ReceivedTransfer
from edgebed.server.workloads.feel.solver.model import FeelProblem, FeelSolution, payload_bits
from edgebed.server.workloads.feel.solver.solve import allocate
from edgebed.server.workloads.template import Orchestrator

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeelConfig:
    model: str = "cnn"
    dataset: str = "mnist5k"
    data_root: Optional[str] = None
    partition: str = "iid"            # "iid" or "noniid" (section VI-A)
    max_samples: Optional[int] = None
    holdout: float = 0.2              # share of the data the server keeps for testing
    seed: int = 0
    bits: int = 32                    # b, gradient quantization (32 = raw float32)
    base_lr: float = 0.02
    reference_batch: int = 32         # eta = base_lr sqrt(B / reference_batch)
    deadline_s: float = 120.0         # a round aggregates what arrived by then
    profile_batches: tuple = (1, 2, 4, 8, 16, 32)  # the eq. (9) fit's batch sizes
    profile_repeats: int = 3
    run_id: str = "feel"

    def __post_init__(self) -> None:
        if not 1 <= self.bits <= 32:
            raise ValueError(f"bits must be in 1..32, got {self.bits}")
        if not 0.0 < self.holdout < 1.0:
            raise ValueError(f"holdout must be in (0, 1), got {self.holdout}")
        check_partition(self.partition)


@dataclass(frozen=True)
class RoundPlan:
    """What an allocator decides for one round."""

    batch: Dict[str, int]
    uplink_bps: Dict[str, float]
    downlink_bps: Dict[str, float]
    predicted_s: float = 0.0          # the model's round latency, 0 if none
    mode: str = "gradient"            # or "model" (FedAvg: local epoch, delta upload)
    local_epochs: int = 1             # "model" mode: epochs before the upload
    bits: Optional[int] = None        # b of the uploads and the broadcast; None: FeelConfig.bits


@dataclass(frozen=True)
class Scheme:
    """A scheme of Table II: the solver's allocator and how devices train."""

    allocator: str                    # a scheme of the solver's table (solve.SCHEMES)
    mode: str = "gradient"            # "model": local epochs, a 32-bit model-delta upload
    individual: bool = False          # several local epochs, then one averaging


#: Table II's schemes, all in the same round loop with different allocators.
#: Gradients travel with b bits; model-based FEEL and individual learning send
#: model parameters, which FedAvg does not quantize (32 bits): that difference
#: is the paper's argument for gradient-based FEEL (Sec. VI-C).
SCHEMES: Dict[str, Scheme] = {
    "proposed": Scheme("proposed"),
    # Gradient-based FEEL "trains each local model using the entire dataset"
    # (Sec. VI-C), bounded like every scheme by the memory limit B^max (17e).
    "gradient-based": Scheme("gradient-fixed"),
    "model-based": Scheme("gradient-fixed", mode="model"),   # FedAvg: local batch, equal slots
    "individual": Scheme("gradient-fixed", mode="model", individual=True),
}


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
    per_device: Dict[str, feel.RoundRes] = field(default_factory=dict)


class FederatedLearning(Orchestrator[FeelConfig, RoundPlan, RoundRecord]):
    keys_type = feel.FeelKeys

    def __init__(self, server, devices, config: FeelConfig,
                 profiles: Optional[Mapping[str, feel.ProfileRes]] = None) -> None:
        """``profiles``: the devices' eq. (9) profiles from an earlier run of
        the same model on the same devices, so they need not be measured again."""
        super().__init__(server, devices, config)
        self.round = 0
        self.profiles: Dict[str, feel.ProfileRes] = dict(profiles or {})
        self.samples: Dict[str, int] = {}
        self._setup: Dict[str, feel.SetupIns] = {}  # what set each device up, to do it again
        self._set_up: Dict[str, object] = {}  # the registration each device was set up under
        self.clipped: Dict[str, Dict[str, float]] = {}  # modeled rates above a link's capacity
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

    def _offer_weights(self) -> None:
        """The model a device sets up from or rejoins from: its parameters and,
        for BatchNorm models, its running statistics (part of the model's hash)."""
        tensors = {"weights": flat_parameters(self.model)}
        if self.num_buffers:
            tensors["buffers"] = flat_buffers(self.model)
        self.server.offer(self.keys.weights, tensors)

    async def configure(self) -> None:
        """Set every device up from the server's weights; profile the ones
        without a profile yet."""
        cfg = self.config
        self._offer_weights()
        self._setup = {name: feel.SetupIns(
            run_id=cfg.run_id, index=i, num_devices=len(self.devices), model=cfg.model,
            dataset=cfg.dataset, data_root=cfg.data_root, partition=cfg.partition,
            max_samples=cfg.max_samples, holdout=cfg.holdout, seed=cfg.seed,
            weights_key=self.keys.weights, wait_s=cfg.deadline_s)
            for i, name in enumerate(self.devices)}
        setup = await self.dispatch(feel.SETUP, dict(self._setup), timeout_s=cfg.deadline_s)
        for name, result in setup.items():
            if result.hash != self.hash:
                raise WorkloadError(f"{name} started from different weights than the server")
            self.samples[name] = result.samples
            self._set_up[name] = self._registration(name)
        unprofiled = [d for d in self.devices if d not in self.profiles]
        if unprofiled:
            self.profiles.update(await self.dispatch(feel.PROFILE, {
                name: feel.ProfileIns(run_id=cfg.run_id, batches=list(cfg.profile_batches),
                                      repeats=cfg.profile_repeats)
                for name in unprofiled}, timeout_s=cfg.deadline_s))
        self.install_validator(self.keys.grad_prefix, self._validate)

    def _registration(self, name: str) -> object:
        """The device's registration record: a new one means the agent registered
        again (it restarted, and lost its data and model with its process)."""
        try:
            return self.server.registry.get(name)
        except UnknownDevice:
            return None

    async def _set_up_again(self, names: List[str]) -> None:
        """Set up again, from the server's current weights, the devices that
        registered anew since their setup; one that fails sits this round out."""
        fresh = [d for d in names if d in self._setup and self._registration(d) is not None
                 and self._registration(d) is not self._set_up.get(d)]
        if not fresh:
            return
        self._offer_weights()
        try:
            done = await self.dispatch(feel.SETUP, {d: self._setup[d] for d in fresh},
                                       timeout_s=self.config.deadline_s, rejoin=True,
                                       step=f"setup again before round {self.round}")
        except WorkloadError:
            return
        for name, result in done.items():
            if result.hash == self.hash:
                self.samples[name] = result.samples
                self._set_up[name] = self._registration(name)
                logger.info("%s registered again: set up anew for round %d", name, self.round)

    def problem(self, uplink_bps: Mapping[str, float], downlink_bps: Mapping[str, float],
                bits: Optional[int] = None) -> FeelProblem:
        """The allocation problem of these devices: their measured eq. (9) fits
        (from configure's profiles), the given full-frame link rates R_k^U and
        R_k^D, and b-bit payloads (default: the config's b)."""
        names = self.problem_devices = list(self.devices)
        return FeelProblem(
            cpu_s_per_sample=tuple(max(self.profiles[n].seconds_per_sample, 1e-6) for n in names),
            cpu_fixed_s=tuple(max(self.profiles[n].fixed_s, 0.0) for n in names),
            update_s=tuple(self.profiles[n].update_s for n in names),
            uplink_bps=tuple(float(uplink_bps[n]) for n in names),
            downlink_bps=tuple(float(downlink_bps[n]) for n in names),
            gradient_bits=payload_bits(self.num_parameters, self.config.bits if bits is None else bits),
            dataset_size=tuple(self.samples[n] for n in names))

    def decide(self, scheme: Optional[str] = None, *, uplink_bps: Mapping[str, float],
               downlink_bps: Mapping[str, float], fixed_batch: Optional[int] = None,
               local_batch: int = 64, individual_epochs: int = 5) -> RoundPlan:
        """The round plan of Table II's ``scheme`` (:data:`SCHEMES`) on this
        fleet's measured eq. (9) fits and the given link rates.

        ``fixed_batch``: gradient-based FEEL's per-device batch (default: all
        local data up to B^max); ``local_batch``: the local SGD batch of the
        model-based schemes; ``individual_epochs``: individual learning's.
        """
        self.require_configured()
        chosen = resolve(SCHEMES, scheme or "proposed")
        bits = 32 if chosen.mode == "model" else self.config.bits
        uplink_bps, downlink_bps = self._within_links(uplink_bps, downlink_bps)
        problem = self.problem(uplink_bps, downlink_bps, bits)
        batch = local_batch if chosen.mode == "model" else fixed_batch
        solution = allocate(problem, chosen.allocator, fixed_batch=batch)
        return self.plan(solution, mode=chosen.mode, bits=bits,
                         local_epochs=individual_epochs if chosen.individual else 1)

    def _within_links(self, uplink_bps: Mapping[str, float], downlink_bps: Mapping[str, float]):
        """The given full-frame rates R_k^U, R_k^D, each capped at what the
        device's link carries (measured capacity, or its emulated link); the
        ones that were above it are ``clipped`` (this decision's: a new one starts afresh)."""
        up, down = {}, {}
        self.clipped = {}
        for name in self.devices:
            up_cap, down_cap = rate_bounds(self.server, name)
            up[name], down[name] = min(uplink_bps[name], up_cap), min(downlink_bps[name], down_cap)
            if up[name] < uplink_bps[name] or down[name] < downlink_bps[name]:
                self.clipped[name] = {"modeled_up_bps": uplink_bps[name], "up_capacity_bps": up_cap,
                                      "modeled_down_bps": downlink_bps[name],
                                      "down_capacity_bps": down_cap}
        return up, down

    def plan(self, solution: FeelSolution, **kwargs) -> RoundPlan:
        """A solver's allocation (vectors in ``problem_devices`` order) as a round plan."""
        return RoundPlan(batch={n: int(b) for n, b in self.by_device(solution.batch_size).items()},
                         uplink_bps=self.by_device(solution.uplink_bps),
                         downlink_bps=self.by_device(solution.downlink_bps),
                         predicted_s=solution.round_latency_s, **kwargs)

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
        meta = feel.GradMeta.from_meta(received.meta)
        if meta.round != self.round:
            raise CodecError(f"gradient for round {meta.round} arrived during round {self.round}")

    async def run(self, decision: Optional[RoundPlan] = None, tag: str = "") -> RoundRecord:
        """One communication round under an allocator's plan."""
        if decision is None:
            raise WorkloadError("a federated round needs a RoundPlan (see decide)")
        plan, cfg, n = decision, self.config, self.round
        names = [d for d in self.devices if d in plan.batch]
        await self._set_up_again(names)
        bits = cfg.bits if plan.bits is None else plan.bits
        global_key = self.keys.aggregate(n)
        requests = {d: feel.RoundIns(
            run_id=cfg.run_id, round=n, batch=plan.batch[d], uplink_bps=plan.uplink_bps[d],
            grad_key=self.keys.grad(n, d), global_key=global_key, weights_key=self.keys.weights,
            expected_hash=self.hash, bits=bits, mode=plan.mode, local_epochs=plan.local_epochs,
            # FedAvg's local steps use the same sqrt(B) learning-rate law per device.
            local_lr=scaled_lr(cfg.base_lr, plan.batch[d], cfg.reference_batch),
            wait_s=cfg.deadline_s) for d in names}
        start = time.perf_counter()
        receivers = {d: asyncio.ensure_future(self.server.receive(
            d, self.keys.grad(n, d), cfg.deadline_s)) for d in names}

        async def command(d: str):
            """One device's round. A device that misses it rejoins the next one
            from the server's weights; once its command failed (it died, or its
            handler raised), no gradient of it will come: stop waiting for one."""
            try:
                return (await self.dispatch(feel.ROUND, {d: requests[d]}, rejoin=True,
                                            timeout_s=cfg.deadline_s * 2,
                                            step=f"round {n}"))[d]
            except WorkloadError as exc:
                receivers[d].cancel()
                return exc

        commands = {d: asyncio.ensure_future(command(d)) for d in names}
        arrivals = await asyncio.gather(*receivers.values(), return_exceptions=True)
        arrived = {d: r for d, r in zip(names, arrivals) if not isinstance(r, BaseException)}
        missing = {d: self.missing.get(d, "its round failed") if isinstance(r, asyncio.CancelledError)
                   else f"no gradient by the deadline: {r}" for d, r in zip(names, arrivals)
                   if isinstance(r, BaseException)}
        if not arrived:
            for task in commands.values():
                task.cancel()
            raise WorkloadError(f"round {n}: no gradient arrived ({missing})")
        with measured_span(self.server, cfg.run_id, "aggregate", round=n):
            global_grad, global_batch = self._aggregate(arrived, "grad")
            # BatchNorm running stats move on each device; averaging them with
            # the same weights keeps every copy identical (models.feel.nets).
            buffers = self._aggregate(arrived, "buffers")[0] if self.num_buffers else None
        lr = -1.0 if plan.mode == "model" else scaled_lr(cfg.base_lr, global_batch,
                                                         cfg.reference_batch)
        quant = quant_for_bits(bits)
        payload = {"grad": global_grad}
        if buffers is not None:
            payload["buffers"] = buffers  # float32, never quantized: it is tiny
        # Encoded once; each device downloads it at its own downlink slot rate.
        offer = self.server.offer(global_key, payload, rate_bps=dict(plan.downlink_bps),
                                  quant={"grad": quant} if quant else None,
                                  meta=feel.AggregateMeta(lr=lr).to_meta())
        sent = global_grad if quant is None else self._as_received(offer)
        apply_global_gradient(self.model, sent, lr)
        if buffers is not None:
            set_flat_buffers(self.model, buffers)
        self.hash = parameter_hash(self.model)
        self.round += 1
        outcomes = dict(zip(names, await asyncio.gather(*commands.values())))
        results = {d: o for d, o in outcomes.items() if not isinstance(o, BaseException)}
        for d, outcome in outcomes.items():
            if isinstance(outcome, BaseException):
                missing.setdefault(d, self.missing.get(d, str(outcome)))
        record = self._record(n, plan, arrived, missing, results, global_batch,
                              time.perf_counter() - start)
        if record.missing or not record.hashes_agree:
            # Someone will rejoin next round: offer the weights they must load.
            self._offer_weights()
        return record

    def _aggregate(self, arrived: Dict[str, ReceivedTransfer], name: str):
        """eq. (1): sum_k B_k x_k / sum_k B_k over the uploads that arrived."""
        batches = {d: feel.GradMeta.from_meta(r.meta).batch for d, r in arrived.items()}
        total = sum(batches.values())
        acc = None
        for d, r in arrived.items():
            term = r.tensors[name].double() * (batches[d] / total)
            acc = term if acc is None else acc + term
        return acc.float(), total

    @staticmethod
    def _as_received(offer) -> torch.Tensor:
        """The quantized global gradient exactly as the devices will decode it."""
        frames = iter_frames(offer.encoded, device_id="", key=offer.key)
        return decode_transfer(frames).tensors["grad"]

    def _record(self, n: int, plan: RoundPlan, arrived, missing: Dict[str, str],
                results: Dict[str, feel.RoundRes], global_batch: int,
                seconds: float) -> RoundRecord:
        agree = bool(results) and all(r.hash == self.hash for r in results.values())
        if not agree:
            logger.error("round %d: device weights differ from the server's", n)
        for d, reason in missing.items():
            logger.warning("round %d: %s left out: %s", n, d, reason)
        losses = [r.loss for r in results.values()]
        return RoundRecord(
            round=n, seconds=seconds, predicted_s=plan.predicted_s, arrived=sorted(arrived),
            missing=missing, global_batch=global_batch, hashes_agree=agree,
            loss=sum(losses) / len(losses) if losses else float("nan"),
            slowest_work_s=max((r.work_s for r in results.values()), default=0.0),
            per_device=dict(results))

    def test_accuracy(self) -> float:
        self.model.eval()
        with torch.no_grad():
            correct = 0
            for i in range(0, self.test_y.numel(), 500):
                out = self.model(self.test_x[i:i + 500])
                correct += int((out.argmax(1) == self.test_y[i:i + 500]).sum())
        return correct / self.test_y.numel()
