"""Split DNN inference on real agents (paper 004): profile, play the game, run it.

- ``configure``: the devices profile their layers, all at once as they will
  run (``split.profile``: T^lo_{n,m} measured in context, the bytes O_{n,m}
  of eq. (8), P^lo_n from its meter); the server profiles the same layers (T^se_{n,m}, medians of interleaved
  repetitions, ``models.layer_profile``); each device's link rates are its
  registered (allocated) ones. T_d, when not given, is H slots each
  ``slot_margin`` times the measured whole-model server time, so a device's
  tail fits its slot (17) with room for the contention of a shared host.
- ``decide``: TPOS-UAI (Algorithm 2) or another scheme of the game's table
  (``solver.game.SCHEMES``) on that measured ``SplitProblem``.
- ``run``: the decision is enforced: the executor gets each device's slots
  (``SplitExecutor.plan``), each device runs ``split.run`` with its m* and its
  uplink rate; devices, server and the executor measure every phase. The
  result puts per device the measured end-to-end delay and energy next to the
  prediction of eqs. (24), (25).

Overhead (``SplitRun.overhead_ms``): per offloaded inference, measured
end-to-end minus (head + upload + server + download):

- head: the device's head span (layers 1..m*);
- upload: the device's time from the Infer call to its pacer releasing the
  last activation frame (encoding included): the shaped link's airtime;
- server: the executor's time from the activation's arrival (assembled) to
  the result ready: slot waits, the B queue, compute and the hold to the end
  of slot h_max (eq. 24);
- download: the server's time from the result ready to its pacer releasing
  the last reply frame (encoding included). The device's own first-to-last
  reply frame is kept too (``download_rx_s``), but misses the first chunk's
  airtime, which is all of a one-chunk reply.

What is left is the machinery: gRPC transit and framing both ways, the
server's assembly and validation, decoding, the meter's window edges and
thread wake-ups on both hosts. Every term is an interval on one host's
clock, so boards need no clock sync. All-local inferences have none of it
and are not counted.
"""
import asyncio
import logging
import math
import statistics
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from edgebed.models.split.layer_profile import profile_split_model
from edgebed.models.split.nets import SPLIT_MODEL_NAMES, build_split_model, example_inputs
from edgebed.proto.contracts import split
from edgebed.server.errors import WorkloadError
from edgebed.server.links import rate_bounds
from edgebed.server.telemetry import measured_span
from edgebed.server.workloads.split.executor import SlotConfig, SplitExecutor, TailRecord
from edgebed.server.workloads.split.solver import game
from edgebed.server.workloads.split.solver.cost import (
    SplitDevice,
    SplitProblem,
    SplitSolution,
    evaluate,
)
from edgebed.server.workloads.split.solver.params import FIG4, PRICE_UNIT_CYCLES, WEIGHTS
from edgebed.server.workloads.template import Orchestrator

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitConfig:
    model: str = "alexnet"
    input_size: Optional[int] = 64    # ImageNet nets: a small side keeps quota'd devices usable
    seed: int = 0
    n_inferences: int = 10
    warmup: int = 2                   # untimed inferences first (stream setup, caches)
    slots_h: int = 5                  # H (Fig. 4)
    t_d_s: Optional[float] = None     # T_d; None: H * slot_margin * measured server forward
    slot_margin: float = 3.0
    min_slot_s: float = 0.005
    parallel_limit: int = 2           # B (Fig. 4: 4; 2 makes (27) bind with 4 devices)
    release: str = "slot_end"         # eq. (24): the result leaves at the end of slot h_max
    alpha: float = WEIGHTS["fig5"][0]  # eq. (23) weights: Fig. 5's
    beta: float = WEIGHTS["fig5"][1]
    gamma: float = WEIGHTS["fig5"][2]
    c_t: float = FIG4["c_t"]
    c_e: float = FIG4["c_e"]
    delta_range: Tuple[float, float] = FIG4["delta"]  # cycles per bit, drawn per device
    f_s_hz: float = FIG4["f_s_hz"]
    a_h: float = FIG4["a_h"]
    b_h: float = FIG4["b_h"]
    price_unit_cycles: float = PRICE_UNIT_CYCLES  # priced unit of (19), (23): see split_params
    tau_s: float = FIG4["tau_s"]
    p_up_w: float = FIG4["p_up_w"]    # P^up when the link has no tx power: modeled (no radio)
    scheme: str = "tpos-uai"
    neighbours: int = 2
    profile_repeats: int = 15
    profile_warmup: int = 3           # untimed forward passes before the profiled ones
    power_s: float = 0.3              # metered back-to-back passes for P^lo (eq. 12)
    # Devices also time their layers one by one (the delay model's recipe) so a
    # benchmark can compare predictions from both; off in normal runs: it only
    # costs the devices time.
    compare_isolated: bool = False
    # Idle time before each profiled pass and between inferences, so both see a
    # device that waited (cold caches, a refilled CFS budget) the same way.
    gap_s: float = 0.05
    run_id: str = "split"
    timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if self.scheme not in game.SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(game.SCHEMES)}, got {self.scheme!r}")
        if self.model not in SPLIT_MODEL_NAMES:  # before any device is asked to build it
            raise ValueError(f"unknown split model {self.model!r}; known models: "
                             f"{', '.join(SPLIT_MODEL_NAMES)}")
        if self.n_inferences < 1:
            raise ValueError(f"n_inferences must be >= 1, got {self.n_inferences}")
        if self.t_d_s is not None and not self.t_d_s > 0:
            raise ValueError(f"t_d_s must be positive, got {self.t_d_s}")

    @property
    def model_ref(self) -> split.ModelRef:
        return split.ModelRef(name=self.model, seed=self.seed, input_size=self.input_size)


@dataclass(frozen=True)
class InferenceRecord:
    """One inference: the device's timings joined with the server's."""

    device: str
    key: str
    e2e_s: float
    head_s: float
    head_j: float
    upload_s: float
    wait_s: float
    server_s: float                   # arrival to result ready (slot waits, queue, compute, hold)
    slot_wait_s: float
    queue_s: float
    compute_s: float
    download_s: float                 # the reply as its sender paced it
    download_rx_s: float              # the reply's first to last frame, device side
    overhead_s: Optional[float]       # offloaded only: what the phases do not explain
    up_bytes: int
    down_bytes: int
    provenance: str


@dataclass(frozen=True)
class SplitDeviceRow:
    """One device under one decision: measured beside eqs. (24), (25)."""

    device: str
    split: int
    slots: str
    uplink_bps: float
    e2e_s: float                      # the median inference, as the profiles are medians
    e2e_mean_s: float
    e2e_pred_s: float
    head_s: float
    head_pred_s: float
    upload_s: float
    upload_pred_s: float
    server_s: float
    server_pred_s: float
    download_s: float
    download_pred_s: float
    energy_j: float                   # head: the meter; upload: modeled P_up x measured upload
    energy_pred_j: float
    head_j: float
    provenance: str
    e2e_pred_isolated_s: Optional[float] = None
    max_abs_diff: Optional[float] = None


@dataclass
class SplitRun:
    """One executed decision: per device measured vs predicted (seconds, joules)."""

    tag: str
    solution: SplitSolution
    rows: List[SplitDeviceRow]
    inferences: List[InferenceRecord]
    pred_error: float                 # mean over devices of |measured - predicted| / measured,
                                      # measured = the device's median inference
    pred_error_mean: float            # the same with each device's mean inference
    pred_error_isolated: Optional[float]  # the same with T^lo from isolated layer timings
    overhead_ms: Optional[float]      # median over offloaded inferences (see the module doc)
    chosen_splits: Dict[str, int]
    max_active: int                   # most devices holding one of the B places at once
    max_computing: int                # most tails computing at once (<= B)
    missing: Dict[str, str] = field(default_factory=dict)


def _mean(values) -> float:
    values = list(values)
    return float(sum(values) / len(values)) if values else 0.0


class SplitInference(Orchestrator[SplitConfig, SplitSolution, SplitRun]):
    keys_type = split.SplitKeys

    def __init__(self, server, devices, config: SplitConfig) -> None:
        super().__init__(server, devices, config)
        self.profiles: Dict[str, split.ProfileRes] = {}
        self.t_server_s: Optional[np.ndarray] = None
        self.problem: Optional[SplitProblem] = None
        self.problem_isolated: Optional[SplitProblem] = None  # T^lo from isolated layer timings
        self.executor: Optional[SplitExecutor] = None
        self.rates: Dict[str, Tuple[float, float]] = {}  # up, down: what the game assumes

    # ------------------------------------------------------------ configure
    async def configure(self) -> None:
        cfg = self.config
        # The rates the game assumes: each link's measured capacity, or the
        # emulated link the agent paces to, whichever is lower.
        self.rates = {name: rate_bounds(self.server, name) for name in self.devices}
        for name, (up, down) in self.rates.items():
            if not (math.isfinite(up) and math.isfinite(down)):
                raise WorkloadError(f"{name}'s link is neither measured nor emulated: split "
                                    "inference needs its rates (run it through a testbed "
                                    "runner, which measures links first)")
        # All at once, as they will run: emulated devices sharing a host's cores
        # slow each other down (a CFS quota caps each one's use per period,
        # not its speed within it), and the profile must see that too.
        request = split.ProfileIns(run_id=cfg.run_id, model=cfg.model_ref,
                                   repeats=cfg.profile_repeats, warmup=cfg.profile_warmup,
                                   gap_s=cfg.gap_s, power_s=cfg.power_s,
                                   isolated=cfg.compare_isolated)
        self.profiles = await self.dispatch(split.PROFILE, {n: request for n in self.devices},
                                            timeout_s=cfg.timeout_s)
        model = await asyncio.get_running_loop().run_in_executor(
            None, lambda: build_split_model(cfg.model, cfg.seed, input_size=cfg.input_size))
        forward_s = await self._profile_server(model)
        slot_s = max(cfg.min_slot_s, cfg.slot_margin * forward_s)
        t_d = cfg.t_d_s if cfg.t_d_s is not None else cfg.slots_h * slot_s
        self.executor = SplitExecutor(SlotConfig(cfg.slots_h, t_d, cfg.parallel_limit, cfg.release),
                                      run_id=cfg.run_id, seed=cfg.seed, server=self.server)
        self.executor.add_model(model, cfg.input_size)
        self.executor.install(self.server)
        self.problem = self._problem(t_d)
        if all(self.profiles[n].t_local_isolated_s for n in self.devices):
            self.problem_isolated = self._problem(t_d, isolated=True)

    async def _profile_server(self, model) -> float:
        """T^se_{n,m} of every layer on this server (all devices run the same model)."""
        cfg = self.config

        def measure():
            timings = profile_split_model(model, repeats=cfg.profile_repeats, seed=0)
            y = model.run_layers(example_inputs(model, 1, 0), 0, model.num_layers)
            return timings, float(y.double().sum())

        with measured_span(self.server, cfg.run_id, "split_profile_server", model=cfg.model):
            timings, checksum = await asyncio.get_running_loop().run_in_executor(None, measure)
        self.t_server_s = np.array([t.median_s for t in timings])
        for name, prof in self.profiles.items():
            if not np.isclose(prof.output_checksum, checksum, rtol=1e-4):
                raise WorkloadError(f"{name}'s {cfg.model} computes {prof.output_checksum}, the "
                                    f"server's {checksum}: the weights differ")
        return float(self.t_server_s.sum())

    def _problem(self, t_d: float, isolated: bool = False) -> SplitProblem:
        cfg = self.config
        self.problem_devices = list(self.devices)
        deltas = np.random.default_rng(cfg.seed).uniform(*cfg.delta_range, len(self.devices))
        devices = []
        for name, delta in zip(self.problem_devices, deltas):
            prof, link = self.profiles[name], self.server.link(name)
            up, down = self.rates[name]
            devices.append(SplitDevice(
                t_local_s=np.array(prof.t_local_isolated_s if isolated else prof.t_local_s),
                t_server_s=self.t_server_s, out_bytes=np.array(prof.out_bytes, dtype=float),
                result_bytes=prof.result_bytes, uplink_bps=up, downlink_bps=down,
                p_up_w=link.tx_power_w or cfg.p_up_w, p_local_w=prof.p_local_w,
                alpha=cfg.alpha, beta=cfg.beta, gamma=cfg.gamma, c_t=cfg.c_t, c_e=cfg.c_e,
                delta=float(delta), tau_s=cfg.tau_s))
        h = cfg.slots_h
        return SplitProblem(tuple(devices), h, t_d, cfg.parallel_limit, np.full(h, cfg.a_h),
                            np.full(h, cfg.b_h), cfg.f_s_hz, cfg.price_unit_cycles)

    # ------------------------------------------------------------ decide
    def decide(self, scheme: Optional[str] = None, **options) -> SplitSolution:
        """The game's ``scheme`` (default the config's) on the measured problem;
        TPOS-UAI gets the config's neighbour count unless ``options`` say."""
        self.require_configured()
        scheme = scheme or self.config.scheme
        if scheme == "tpos-uai":
            options.setdefault("neighbours", self.config.neighbours)
        return game.solve(self.problem, scheme, np.random.default_rng(self.config.seed), **options)

    # ------------------------------------------------------------ run
    async def run(self, decision: Optional[SplitSolution] = None, tag: str = "split") -> SplitRun:
        cfg = self.config
        solution = decision or self.decide()
        strategies = self.by_device(solution.strategies)
        self.executor.clear_plans()
        self.executor.reset_stats()
        requests = {}
        for name, strategy in strategies.items():
            if strategy.split < self.problem.devices[self.problem_devices.index(name)].num_layers:
                self.executor.plan(name, cfg.model, strategy.split, strategy.slots, cfg.seed,
                                   cfg.input_size)
            requests[name] = split.RunIns(
                run_id=cfg.run_id, tag=tag, model=cfg.model_ref, split=strategy.split,
                slots=list(strategy.slots), uplink_bps=self.rates[name][0],
                n=cfg.n_inferences, warmup=cfg.warmup, gap_s=cfg.gap_s, timeout_s=cfg.timeout_s)
        results = await self.dispatch(split.RUN, requests, timeout_s=cfg.timeout_s,
                                      step=f"split.run[{tag}]")
        records = {r.key: r for r in self.executor.pop_records(cfg.run_id, tag)}
        return self._aggregate(tag, solution, results, records)

    def _inference(self, name: str, row: split.InferenceRow, offloaded: bool,
                   rec: Optional[TailRecord]) -> InferenceRecord:
        server = {k: getattr(rec, k) if rec else 0.0
                  for k in ("server_s", "slot_wait_s", "queue_s", "compute_s")}
        # The download as its sender paced it; the receiver's first-to-last
        # frame misses the first chunk's airtime (all of a one-chunk reply).
        tx = rec.download_tx_s if rec else None
        download = tx if tx is not None else row.download_s
        overhead = (row.e2e_s - (row.head_s + row.upload_s + server["server_s"] + download)
                    if offloaded else None)
        return InferenceRecord(device=name, key=row.key, e2e_s=row.e2e_s, head_s=row.head_s,
                               head_j=row.head_j, upload_s=row.upload_s, wait_s=row.wait_s,
                               download_s=download, download_rx_s=row.download_s,
                               overhead_s=overhead, up_bytes=row.up_bytes,
                               down_bytes=row.down_bytes, provenance=row.provenance, **server)

    def _aggregate(self, tag: str, solution: SplitSolution, results: Dict[str, split.RunRes],
                   records: Dict[str, TailRecord]) -> SplitRun:
        rows, inferences, errors, errors_iso, errors_mean = [], [], [], [], []
        iso = evaluate(self.problem_isolated, solution.strategies) if self.problem_isolated else None
        for name, res in results.items():
            i = self.problem_devices.index(name)
            pred, dev = solution.outcomes[i], self.problem.devices[i]
            mine = [self._inference(name, r, res.split < dev.num_layers, records.get(r.key))
                    for r in res.inferences]
            inferences += mine
            # The device's delay: the median inference, as the profiles are medians
            # (the mean, with the host's scheduling hiccups, is reported beside it).
            e2e = statistics.median(r.e2e_s for r in mine)
            e2e_mean = _mean(r.e2e_s for r in mine)
            upload = _mean(r.upload_s for r in mine)
            head_j = _mean(r.head_j for r in mine)
            errors.append(abs(e2e - pred.delay_s) / e2e)
            errors_mean.append(abs(e2e_mean - pred.delay_s) / e2e_mean)
            if iso is not None:
                errors_iso.append(abs(e2e - iso[i].delay_s) / e2e)
            rows.append(SplitDeviceRow(
                device=name, split=res.split, slots=",".join(map(str, solution.strategies[i].slots)),
                uplink_bps=dev.uplink_bps, e2e_s=e2e, e2e_mean_s=e2e_mean, e2e_pred_s=pred.delay_s,
                head_s=_mean(r.head_s for r in mine), head_pred_s=pred.local_s,
                upload_s=upload, upload_pred_s=pred.upload_s,
                server_s=_mean(r.server_s for r in mine), server_pred_s=pred.server_s,
                download_s=_mean(r.download_s for r in mine), download_pred_s=pred.download_s,
                energy_j=head_j + dev.p_up_w * upload, energy_pred_j=pred.energy_j,
                head_j=head_j, provenance=mine[0].provenance if mine else "",
                e2e_pred_isolated_s=iso[i].delay_s if iso else None,
                max_abs_diff=res.max_abs_diff))
            logger.info("%s: split %d, e2e measured %.4f s, predicted %.4f s", name, res.split,
                        e2e, pred.delay_s)
        overheads = [r.overhead_s for r in inferences if r.overhead_s is not None]
        return SplitRun(
            tag=tag, solution=solution, rows=rows, inferences=inferences,
            pred_error=_mean(errors), pred_error_mean=_mean(errors_mean),
            pred_error_isolated=_mean(errors_iso) if iso else None,
            overhead_ms=statistics.median(overheads) * 1e3 if overheads else None,
            chosen_splits={r.device: r.split for r in rows},
            max_active=self.executor.max_active, max_computing=self.executor.max_computing,
            missing=dict(self.missing))

    def on_close(self) -> None:
        if self.executor is not None:
            self.executor.close()
