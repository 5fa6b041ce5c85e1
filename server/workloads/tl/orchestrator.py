"""Transfer learning on latent vectors across real agents (paper 000, III-A).

The five steps of section III-A:
1. every device trains its autoencoder (``tl.prepare``), then measures what
   the solver needs (``tl.profile``: encoding time and energy per sample,
   idle power, fine-tuning energy);
2. the server solves JUDBA on those measured inputs: f_i comes from the
   measured encoding time through eq. (5), h_i from the device's registered
   link (distance, path loss);
3. the devices encode and the chosen ones upload latents and labels, each
   shaped to its allocated rate w_i B log2(1 + P_i h_i / N0) (eq. 6);
4. the server trains the edge CNN on the uploaded latents while the devices
   wait (their idle energy is measured);
5. the server broadcasts the CNN; non-uploaders fine-tune it; everyone
   classifies its local test set.
Predicted and measured completion latency T (eq. 8) are logged per device.
"""
import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from edgebed.models.tl.edge_cnn import EdgeCNN, train_classifier
from edgebed.proto.contracts import tl
from edgebed.proto.contracts.base import check_partition
from edgebed.proto.errors import CodecError
from edgebed.proto.link_model import channel_gain
from edgebed.server.errors import WorkloadError
from edgebed.server.links import rate_bounds
from edgebed.server.telemetry import measured_span
from edgebed.server.transfers import ReceivedTransfer
from edgebed.server.workloads.template import Orchestrator
from edgebed.server.workloads.tl.solver import (
    JudbaProblem,
    JudbaSolution,
    clipped_rates,
    cpu_hz_from_encode_time,
    evaluate,
    solve,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TLConfig:
    lam: int = 4
    dataset: str = "mnist5k"
    data_root: Optional[str] = None
    partition: str = "noniid"         # "iid" or "noniid" (section V-A)
    max_samples: Optional[int] = None
    seed: int = 0
    ae_epochs: int = 5
    ae_lr: float = 1e-3
    cnn_epochs: int = 10
    tune_epochs: int = 2
    idle_profile_s: float = 0.5       # how long each device's idle power is measured
    bandwidth_hz: float = 10e6        # B (Table II)
    noise_w: float = 7.9e-13          # N0 (Table II)
    tx_power_w: float = 0.3           # P_i when the device's link does not say
    distance_m: float = 100.0         # when the device's link does not say
    alpha: float = 0.5                # alpha_i (Table II)
    run_id: str = "tl"
    timeout_s: float = 1800.0         # every step, including the devices' wait for the CNN

    def __post_init__(self) -> None:
        if self.lam < 1:
            raise ValueError(f"lam must be >= 1, got {self.lam}")
        if self.bandwidth_hz <= 0:
            raise ValueError(f"bandwidth_hz must be positive, got {self.bandwidth_hz}")
        check_partition(self.partition)


@dataclass(frozen=True)
class TLDeviceRow:
    """One device's measured outcome beside the solver's prediction."""

    device: str
    rho: int
    w: float
    uplink_bps: float                 # allocated
    t_comp_s: float                   # measured encoding
    t_comm_s: float                   # measured upload (0: did not upload)
    finish_s: float                   # t_comp + t_comm
    finish_pred_s: float              # the term of eq. (8)
    accuracy: float
    provenance: str                   # of the energies
    e_encode_j: float
    e_idle_j: float
    e_download_j: float
    e_infer_j: float
    e_trans_modeled_j: float          # w_i P_i over the measured airtime: modeled, no radio here
    e_upload_j: Optional[float] = None
    e_tune_j: Optional[float] = None


@dataclass
class TLRun:
    """One pass of steps 3-5 under one allocation, with measured outcomes."""

    tag: str
    solution: JudbaSolution
    devices: List[str]
    rows: List[TLDeviceRow]
    T_pred_s: float
    T_meas_s: float                   # server clock: dispatch to the last upload stored
    finish_spread_s: float            # max - min of uploaders' measured t_comp + t_comm
    cnn_train_s: float
    accuracy_uploaders: Optional[float]
    accuracy_finetuned: Optional[float]
    missing: Dict[str, str] = field(default_factory=dict)
    clipped: Dict[str, Dict[str, float]] = field(default_factory=dict)  # modeled rate > capacity


def _mean(values: Sequence[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None


class TransferLearning(Orchestrator[TLConfig, JudbaSolution, TLRun]):
    keys_type = tl.TLKeys

    def __init__(self, server, devices, config: TLConfig) -> None:
        super().__init__(server, devices, config)
        self.prepared: Dict[str, tl.PrepareRes] = {}
        self.profiles: Dict[str, tl.ProfileRes] = {}
        self.problem: Optional[JudbaProblem] = None
        self.server_s_per_sample_epoch = 0.0

    # ------------------------------------------------------------ step 1
    async def configure(self) -> None:
        cfg = self.config
        self.prepared = await self.dispatch(tl.PREPARE, {
            name: tl.PrepareIns(
                run_id=cfg.run_id, index=i, num_devices=len(self.devices), lam=cfg.lam,
                dataset=cfg.dataset, data_root=cfg.data_root, partition=cfg.partition,
                max_samples=cfg.max_samples, seed=cfg.seed, ae_epochs=cfg.ae_epochs,
                ae_lr=cfg.ae_lr)
            for i, name in enumerate(self.devices)}, timeout_s=cfg.timeout_s)
        self.profiles = await self.dispatch(tl.PROFILE, {
            name: tl.ProfileIns(run_id=cfg.run_id, idle_s=cfg.idle_profile_s)
            for name in self.devices}, timeout_s=cfg.timeout_s)
        self.server_s_per_sample_epoch = await self._profile_server()
        self.problem = self._problem()
        self.install_validator(self.keys.key("latents") + "/", self._validate_latents)

    async def _profile_server(self) -> float:
        """Seconds per sample and epoch of edge-CNN training on this server:
        one warm epoch on 256 inputs of the latent shape, measured (a span),
        which the solver then extrapolates to the uploaded set (an estimate)."""
        first = self.prepared[self.devices[0]]
        shape, classes = tuple(first.latent_shape), first.num_classes
        inputs = torch.randn((256,) + shape)
        labels = torch.arange(256) % classes
        cnn = EdgeCNN(shape, classes)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, train_classifier, cnn, inputs[:8], labels[:8], 1)
        with measured_span(self.server, self.config.run_id, "profile_cnn", samples=256) as span:
            await loop.run_in_executor(None, train_classifier, cnn, inputs, labels, 1)
        return span.span.duration_s / 256

    def _problem(self) -> JudbaProblem:
        """JUDBA inputs from registered profiles and measured phases (the
        fine-tuning and edge-training terms are extrapolated from measured
        samples: estimates)."""
        cfg = self.config
        names = self.problem_devices = list(self.devices)
        macs = max(self.prepared[n].encoder_macs for n in names) or 1
        links = [self.server.profile(n).link for n in names]
        prof = [self.profiles[n] for n in names]
        samples = [self.prepared[n].train_samples for n in names]
        return JudbaProblem(
            samples=tuple(samples),
            cycles_per_sample=float(macs),
            # eq. (5) read backwards: f_i = c / (measured seconds per sample).
            cpu_hz=cpu_hz_from_encode_time(
                samples, macs, [p.encode_s_per_sample * n for n, p in zip(samples, prof)]),
            tx_power_w=tuple(link.tx_power_w or cfg.tx_power_w for link in links),
            idle_power_w=tuple(p.idle_power_w for p in prof),
            gain=tuple(channel_gain(link.distance_m or cfg.distance_m) for link in links),
            noise_w=cfg.noise_w,
            bandwidth_hz=cfg.bandwidth_hz,
            # v_i: latents plus the int64 labels that really travel with them.
            upload_bits=tuple(8.0 * n * (p.latent_bytes_per_sample + 8)
                              for n, p in zip(samples, prof)),
            alpha=tuple(cfg.alpha for _ in names),
            encode_energy_j=tuple(p.encode_j_per_sample * n for n, p in zip(samples, prof)),
            # e_down and e_inf are paid whether or not a device uploads, so
            # they cannot change the decision; measured values are reported.
            download_energy_j=tuple(0.0 for _ in names),
            tune_energy_j=tuple(p.tune_epoch_j * cfg.tune_epochs for p in prof),
            inference_energy_j=tuple(0.0 for _ in names),
            server_hz=1.0,
            server_cycles_per_sample=self.server_s_per_sample_epoch * cfg.cnn_epochs,
            # No device is allocated more than its link carries (measured, or emulated).
            rate_cap_bps=tuple(rate_bounds(self.server, n)[0] for n in names),
        )

    def _validate_latents(self, received: ReceivedTransfer) -> None:
        """Reject latents that do not match the announced lambda (nothing is stored)."""
        prepared = self.prepared.get(received.device)
        if prepared is None:
            raise CodecError(f"{received.device} is not part of this transfer-learning run")
        meta = tl.LatentMeta.from_meta(received.meta)
        if meta.lam != self.config.lam:
            raise CodecError(f"latents announce lambda {meta.lam}, this run uses {self.config.lam}")
        latents, labels = received.tensors.get("latents"), received.tensors.get("labels")
        if latents is None or labels is None:
            raise CodecError("an upload of latents needs tensors 'latents' and 'labels'")
        expected = tuple(prepared.latent_shape)
        if tuple(latents.shape[1:]) != expected:
            raise CodecError(f"latents of shape {tuple(latents.shape)} do not match lambda "
                             f"{self.config.lam}: expected N x {' x '.join(map(str, expected))}")
        if labels.shape != (latents.shape[0],):
            raise CodecError(f"{labels.shape[0] if labels.dim() else 0} labels for "
                             f"{latents.shape[0]} latent samples")

    # ------------------------------------------------------------ steps 2-5
    def decide(self, scheme: Optional[str] = None, allocator: Optional[str] = None,
               rho: Optional[Sequence[int]] = None) -> JudbaSolution:
        """JUDBA's decider ``scheme`` ("proposed", "full", "random"), or the
        given uploading decision ``rho`` with ``allocator``'s split of the band."""
        self.require_configured()
        if rho is not None:
            return evaluate(self.problem, rho, allocator or "optimal")
        # At least one upload: the edge CNN needs data (section III-A, step 4).
        return solve(self.problem, scheme or "proposed", allocator=allocator, min_uploaders=1,
                     rng=np.random.default_rng(self.config.seed))

    async def run(self, decision: Optional[JudbaSolution] = None, tag: str = "judba") -> TLRun:
        cfg = self.config
        solution = decision or self.decide()
        rho, rate = self.by_device(solution.rho), self.by_device(solution.uplink_bps)
        finish_pred, w = self.by_device(solution.device_latency_s), self.by_device(solution.w)
        for name in rho:
            logger.info("%s: rho=%d w=%.3f rate=%.2f Mbit/s predicted finish %.3f s", name,
                        rho[name], w[name], rate[name] / 1e6, finish_pred[name])
        key = {n: self.keys.latents(tag, n) for n in rho}
        start = time.perf_counter()
        arrivals: Dict[str, float] = {}

        async def arrival(name: str) -> ReceivedTransfer:
            got = await self.server.receive(name, key[name], cfg.timeout_s)
            arrivals[name] = time.perf_counter() - start
            return got

        receivers = {n: asyncio.ensure_future(arrival(n)) for n in rho if rho[n]}
        encoded = await self.dispatch(tl.ENCODE_UPLOAD, {
            n: tl.EncodeUploadIns(run_id=cfg.run_id, upload=bool(rho[n]), key=key[n],
                                  uplink_bps=rate[n]) for n in rho},
            timeout_s=cfg.timeout_s, step=f"tl.encode_upload[{tag}]")
        received = []
        for name, task in receivers.items():
            if name in encoded:
                received.append(await task)
            else:
                task.cancel()
        if not received:
            raise WorkloadError("no latents arrived: nothing to train the edge CNN on")
        T_meas = max(arrivals.values())

        # Step 4 while the devices idle; step 5 when they get the model.
        model_key = self.keys.model(tag)
        waiting = asyncio.ensure_future(self.dispatch(tl.AWAIT_MODEL, {
            n: tl.AwaitModelIns(run_id=cfg.run_id, key=model_key, wait_s=cfg.timeout_s,
                                tune=not rho[n], tune_epochs=cfg.tune_epochs) for n in encoded},
            timeout_s=cfg.timeout_s, step=f"tl.await_model[{tag}]"))
        cnn, train_s = await self._train_edge_cnn(received, tag)
        self.server.offer(model_key, cnn.state_dict())
        finals = await waiting
        rows = [self._row(n, solution, encoded[n], finals[n]) for n in rho
                if n in encoded and n in finals]
        up = [r for r in rows if r.rho]
        finishes = [r.finish_s for r in up]
        return TLRun(
            tag=tag, solution=solution, devices=[r.device for r in rows], rows=rows,
            T_pred_s=solution.latency_s, T_meas_s=T_meas,
            finish_spread_s=max(finishes) - min(finishes) if finishes else 0.0,
            cnn_train_s=train_s,
            accuracy_uploaders=_mean([r.accuracy for r in up]),
            accuracy_finetuned=_mean([r.accuracy for r in rows if not r.rho]),
            missing=dict(self.missing),
            clipped={self.problem_devices[i]: {"modeled_bps": modeled, "capacity_bps": cap}
                     for i, (modeled, cap) in clipped_rates(self.problem).items()},
        )

    async def _train_edge_cnn(self, received: List[ReceivedTransfer], tag: str):
        cfg = self.config
        inputs = torch.cat([r.tensors["latents"] for r in received])
        labels = torch.cat([r.tensors["labels"] for r in received])
        classes = self.prepared[received[0].device].num_classes
        cnn = EdgeCNN(tuple(inputs.shape[1:]), classes)

        def train() -> None:
            train_classifier(cnn, inputs, labels, epochs=cfg.cnn_epochs, seed=cfg.seed)

        with measured_span(self.server, cfg.run_id, "cnn_train", samples=int(labels.numel()),
                           tag=tag) as span:
            await asyncio.get_running_loop().run_in_executor(None, train)
        return cnn, span.span.duration_s

    def _row(self, name: str, solution: JudbaSolution, enc: tl.EncodeUploadRes,
             fin: tl.AwaitModelRes) -> TLDeviceRow:
        i = self.problem_devices.index(name)
        t_comm = enc.upload.seconds if enc.upload else 0.0
        row = TLDeviceRow(
            device=name, rho=solution.rho[i], w=solution.w[i], uplink_bps=solution.uplink_bps[i],
            t_comp_s=enc.encode.seconds, t_comm_s=t_comm, finish_s=enc.encode.seconds + t_comm,
            finish_pred_s=solution.device_latency_s[i], accuracy=fin.accuracy,
            provenance=enc.encode.provenance, e_encode_j=enc.encode.energy_j,
            e_idle_j=fin.idle.energy_j, e_download_j=fin.download.energy_j,
            e_infer_j=fin.infer.energy_j,
            # The radio's transmit energy is modeled (there is no radio here):
            # w_i P_i radiated over the measured airtime, the solver's model.
            e_trans_modeled_j=(solution.w[i] * self.problem.tx_power_w[i] * t_comm
                               if solution.rho[i] else 0.0),
            e_upload_j=enc.upload.energy_j if enc.upload else None,
            e_tune_j=fin.tune.energy_j if fin.tune else None)
        logger.info("%s: finish predicted %.3f s, measured %.3f s", name, row.finish_pred_s,
                    row.finish_s)
        return row
