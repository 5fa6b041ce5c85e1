"""Split DNN inference on real agents (paper 004): profile, play the game, run it.

- ``configure``: the devices profile their layers, all at once as they will
  run (``split.profile``: T^lo_{n,m} measured in context, the bytes O_{n,m}
  of eq. (8), P^lo_n from its meter); the server profiles the same layers (T^se_{n,m}, medians of interleaved
  repetitions, ``models.layer_profile``); each device's link rates are its
  registered (allocated) ones. T_d, when not given, is H slots each
  ``slot_margin`` times the measured whole-model server time, so a device's
  tail fits its slot (17) with room for the contention of a shared host.
- ``decide``: TPOS-UAI (Algorithm 2) or another scheme of ``solvers.split_game``
  on that measured ``SplitProblem``.
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
import statistics
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from edgebed.models.split.layer_profile import profile_split_model
from edgebed.models.split.nets import SPLIT_MODEL_NAMES, build_split_model, example_inputs
from edgebed.server.core import EdgeServer
from edgebed.server.workloads.template import Orchestrator
from edgebed.server.workloads.split.solver import game as split_game
from edgebed.server.workloads.split.solver.cost import (
    DeviceStrategy,
    SplitDevice,
    SplitProblem,
    SplitSolution,
    evaluate,
)
from edgebed.server.workloads.split.solver.params import FIG4, PRICE_UNIT_CYCLES, WEIGHTS
from edgebed.server.workloads.split.executor import SlotConfig, SplitExecutor
from edgebed.server.telemetry import measured_span

logger = logging.getLogger(__name__)

SCHEMES = ("tpos-uai", "tpos-cai", "gtpos", "all-local", "all-offload")


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
        if self.scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}, got {self.scheme!r}")
        if self.model not in SPLIT_MODEL_NAMES:  # before any device is asked to build it
            raise ValueError(f"unknown split model {self.model!r}; known models: "
                             f"{', '.join(SPLIT_MODEL_NAMES)}")
        if self.n_inferences < 1:
            raise ValueError(f"n_inferences must be >= 1, got {self.n_inferences}")
        if self.t_d_s is not None and not self.t_d_s > 0:
            raise ValueError(f"t_d_s must be positive, got {self.t_d_s}")


@dataclass
class SplitRun:
    """One executed decision: per device measured vs predicted (seconds, joules)."""

    tag: str
    solution: SplitSolution
    rows: List[Dict[str, Any]]
    inferences: List[Dict[str, Any]]
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


class SplitInference(Orchestrator[SplitRun]):
    def __init__(self, server: EdgeServer, devices: List[str], config: SplitConfig) -> None:
        super().__init__(server, devices)
        self.config = config
        self.profiles: Dict[str, dict] = {}
        self.t_server_s: Optional[np.ndarray] = None
        self.problem: Optional[SplitProblem] = None
        self.problem_isolated: Optional[SplitProblem] = None  # T^lo from isolated layer timings
        self.problem_devices: List[str] = []
        self.executor: Optional[SplitExecutor] = None

    def _model_args(self) -> Dict[str, Any]:
        cfg = self.config
        return {"model": cfg.model, "seed": cfg.seed, "input_size": cfg.input_size,
                "run_id": cfg.run_id}

    # ------------------------------------------------------------ configure
    async def configure(self) -> None:
        cfg = self.config
        for name in self.devices:
            link = self.server.link(name)
            if link.uplink_bps <= 0 or link.downlink_bps <= 0:
                raise ValueError(f"{name} has an unshaped link (up {link.uplink_bps}, down "
                                 f"{link.downlink_bps} bit/s): split inference needs its rates")
        args = {**self._model_args(), "repeats": cfg.profile_repeats, "gap_s": cfg.gap_s,
                "isolated": cfg.compare_isolated}
        # All at once, as they will run: emulated devices sharing a host's cores
        # slow each other down (a CFS quota caps each one's use per period,
        # not its speed within it), and the profile must see that too.
        self.profiles = self.keep_successes(await self.server.broadcast(
            self.devices, "split.profile", args, cfg.timeout_s), "split.profile")
        model = await asyncio.get_running_loop().run_in_executor(
            None, lambda: build_split_model(cfg.model, cfg.seed, input_size=cfg.input_size))
        forward_s = await self._profile_server(model)
        slot_s = max(cfg.min_slot_s, cfg.slot_margin * forward_s)
        t_d = cfg.t_d_s if cfg.t_d_s is not None else cfg.slots_h * slot_s
        self.executor = SplitExecutor(SlotConfig(cfg.slots_h, t_d, cfg.parallel_limit, cfg.release),
                                      seed=cfg.seed)
        self.executor.add_model(model, cfg.input_size)
        self.executor.install(self.server)
        self.problem = self._problem(t_d)
        if all(self.profiles[n].get("t_local_isolated_s") for n in self.devices):
            self.problem_isolated = self._problem(t_d, "t_local_isolated_s")

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
            if not np.isclose(prof["output_checksum"], checksum, rtol=1e-4):
                raise ValueError(f"{name}'s {cfg.model} computes {prof['output_checksum']}, the "
                                 f"server's {checksum}: the weights differ")
        return float(self.t_server_s.sum())

    def _problem(self, t_d: float, local_key: str = "t_local_s") -> SplitProblem:
        cfg = self.config
        self.problem_devices = list(self.devices)
        deltas = np.random.default_rng(cfg.seed).uniform(*cfg.delta_range, len(self.devices))
        devices = []
        for name, delta in zip(self.problem_devices, deltas):
            prof, link = self.profiles[name], self.server.link(name)
            devices.append(SplitDevice(
                t_local_s=np.array(prof[local_key]), t_server_s=self.t_server_s,
                out_bytes=np.array(prof["out_bytes"], dtype=float),
                result_bytes=float(prof["result_bytes"]),
                rate_up_bps=link.uplink_bps, rate_down_bps=link.downlink_bps,
                p_up_w=link.tx_power_w or cfg.p_up_w, p_local_w=prof["p_local_w"],
                alpha=cfg.alpha, beta=cfg.beta, gamma=cfg.gamma, c_t=cfg.c_t, c_e=cfg.c_e,
                delta=float(delta), tau_s=cfg.tau_s))
        h = cfg.slots_h
        return SplitProblem(tuple(devices), h, t_d, cfg.parallel_limit, np.full(h, cfg.a_h),
                            np.full(h, cfg.b_h), cfg.f_s_hz, cfg.price_unit_cycles)

    # ------------------------------------------------------------ decide
    def decide(self, scheme: Optional[str] = None) -> SplitSolution:
        assert self.problem is not None, "configure() first"
        scheme = scheme or self.config.scheme
        rng = np.random.default_rng(self.config.seed)
        if scheme == "tpos-uai":
            return split_game.tpos_uai(self.problem, rng, neighbours=self.config.neighbours)
        if scheme == "tpos-cai":
            return split_game.tpos_cai(self.problem, rng)
        if scheme == "gtpos":
            return split_game.gtpos(self.problem)
        if scheme == "all-local":
            return split_game.all_local(self.problem)
        if scheme == "all-offload":
            return split_game.all_offload(self.problem, rng)
        raise ValueError(f"unknown scheme {scheme!r}; one of {SCHEMES}")

    # ------------------------------------------------------------ run
    async def run(self, solution: Optional[SplitSolution] = None, tag: str = "split") -> SplitRun:
        cfg = self.config
        assert self.executor is not None, "configure() first"
        solution = solution or self.decide()
        names = [n for n in self.problem_devices if n in self.devices]
        index = {n: i for i, n in enumerate(self.problem_devices)}
        run_id = f"{cfg.run_id}/{tag}"
        self.executor.clear_plans()
        self.executor.reset_stats()
        per_device = {}
        for name in names:
            strategy: DeviceStrategy = solution.strategies[index[name]]
            if strategy.split < self.problem.devices[index[name]].num_layers:
                self.executor.plan(name, cfg.model, strategy.split, strategy.slots, cfg.seed,
                                   cfg.input_size)
            self.server.set_link(name, self.server.link(name))
            per_device[name] = {"split": strategy.split, "slots": list(strategy.slots),
                                "rate_bps": self.server.link(name).uplink_bps,
                                "key_prefix": f"split/{run_id}/{name}"}
        common = {**self._model_args(), "run_id": run_id, "n": cfg.n_inferences,
                  "warmup": cfg.warmup, "gap_s": cfg.gap_s, "timeout_s": cfg.timeout_s}
        results = self.keep_successes(await self.server.broadcast(
            names, "split.run", common, cfg.timeout_s, per_device), f"split.run[{tag}]")
        records = {r.key: r for r in self.executor.pop_records(run_id)}
        return self._aggregate(tag, solution, names, index, results, records)

    def _aggregate(self, tag, solution, names, index, results, records) -> SplitRun:
        rows, inferences, errors, overheads, errors_iso, errors_mean = [], [], [], [], [], []
        iso = evaluate(self.problem_isolated, solution.strategies) if self.problem_isolated else None
        for name in names:
            if name not in results:
                continue
            res = results[name]
            pred = solution.outcomes[index[name]]
            dev = self.problem.devices[index[name]]
            for r in res["inferences"]:
                rec = records.get(r["key"])
                r = dict(r, device=name, download_rx_s=r.pop("download_s"))
                r.update({k: getattr(rec, k) if rec else 0.0
                          for k in ("server_s", "slot_wait_s", "queue_s", "compute_s")})
                # The download as its sender paced it; the receiver's first-to-last
                # frame misses the first chunk's airtime (all of a one-chunk reply).
                tx = rec.download_tx_s if rec else None
                r["download_s"] = tx if tx is not None else r["download_rx_s"]
                if res["split"] < dev.num_layers:
                    r["overhead_s"] = r["e2e_s"] - (r["head_s"] + r["upload_s"] + r["server_s"]
                                                    + r["download_s"])
                    overheads.append(r["overhead_s"])
                inferences.append(r)
            mine = [r for r in inferences if r["device"] == name]
            # The device's delay: the median inference, as the profiles are medians
            # (the mean, with the host's scheduling hiccups, is reported beside it).
            e2e = statistics.median(r["e2e_s"] for r in mine)
            e2e_mean = _mean(r["e2e_s"] for r in mine)
            upload = _mean(r["upload_s"] for r in mine)
            energy = _mean(r["head_j"] for r in mine) + dev.p_up_w * upload
            errors.append(abs(e2e - pred.delay_s) / e2e)
            errors_mean.append(abs(e2e_mean - pred.delay_s) / e2e_mean)
            if iso is not None:
                errors_iso.append(abs(e2e - iso[index[name]].delay_s) / e2e)
            rows.append({
                "device": name, "split": res["split"],
                "slots": ",".join(map(str, solution.strategies[index[name]].slots)),
                "rate_up_mbps": dev.rate_up_bps / 1e6,
                "e2e_s": e2e, "e2e_mean_s": e2e_mean, "e2e_pred_s": pred.delay_s,
                "head_s": _mean(r["head_s"] for r in mine), "head_pred_s": pred.local_s,
                "upload_s": upload, "upload_pred_s": pred.upload_s,
                "server_s": _mean(r["server_s"] for r in mine), "server_pred_s": pred.server_s,
                "download_s": _mean(r["download_s"] for r in mine),
                "download_pred_s": pred.download_s,
                "e2e_pred_isolated_s": iso[index[name]].delay_s if iso else None,
                "energy_j": energy, "energy_pred_j": pred.energy_j,
                "head_j": _mean(r["head_j"] for r in mine),
                "max_abs_diff": res.get("max_abs_diff"),
                "provenance": mine[0]["provenance"] if mine else "",
            })
            logger.info("%s: split %d, e2e measured %.4f s, predicted %.4f s", name, res["split"],
                        e2e, pred.delay_s)
        return SplitRun(
            tag=tag, solution=solution, rows=rows, inferences=inferences,
            pred_error=_mean(errors), pred_error_mean=_mean(errors_mean),
            pred_error_isolated=_mean(errors_iso) if iso else None,
            overhead_ms=statistics.median(overheads) * 1e3 if overheads else None,
            chosen_splits={r["device"]: r["split"] for r in rows},
            max_active=self.executor.max_active, max_computing=self.executor.max_computing,
            missing=dict(self.missing))

    def close(self) -> None:
        if self.executor is not None:
            self.executor.close()
