"""Quickstart: a server and 4 real agents on loopback move tensors both ways.

Each agent runs with its own CPU quota (when cgroups are writable) and link
rates. For every device the suite measures a compute phase, an upload at the
device's uplink rate and a download at its downlink rate, checks the bytes
arrived intact (checksums on both ends), prints a per-device table of
measured latency, bytes, rate and energy with provenance, and writes
results/quickstart/<run-id>/. Then a short transfer-learning pass (paper
000), a short split-inference pass (paper 004: AlexNet at 64 x 64, split
points and slots from TPOS-UAI, measured end-to-end delay beside eq. (24))
and a few federated rounds (paper 003: proposed batch sizes and time slots,
measured round time beside the model's, parameter hashes checked).
"""
import argparse
import logging
from typing import Any, Dict, List

import torch

from edgebed.benchmarks.fleet import AgentSpec, ServerThread, local_testbed, quota_support
from edgebed.benchmarks.plots import bar_chart
from edgebed.benchmarks.results import RunWriter, format_table
from edgebed.device.workloads.runtime import tensor_checksum
from edgebed.server.workloads.feel.orchestrator import FederatedLearning, FeelConfig, RoundPlan
from edgebed.server.workloads.split.orchestrator import SplitConfig, SplitInference
from edgebed.server.workloads.tl.orchestrator import TLConfig, TransferLearning
from edgebed.server.workloads.feel.solver.solve import allocate

logger = logging.getLogger(__name__)

# Four emulated device classes: CPU share (cores) and link (up, down).
DEVICE_CLASSES = [
    (1.0, "up=100Mbit,down=200Mbit"),
    (0.75, "up=50Mbit,down=100Mbit"),
    (0.5, "up=20Mbit,down=50Mbit"),
    (0.25, "up=10Mbit,down=20Mbit"),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--agents", type=int, default=4, help="agents to start (default 4)")
    parser.add_argument("--size-mb", type=float, default=None,
                        help="MiB moved each way per device (default 4, --quick 1)")
    parser.add_argument("--listen", default="127.0.0.1:0",
                        help="server address; 0.0.0.0:PORT to accept agents from boards")
    parser.add_argument("--external", type=int, default=0, metavar="N",
                        help="do not start agents; wait for N agents started elsewhere")
    parser.add_argument("--token", default=None, help="shared token for the agents")
    parser.add_argument("--no-quota", action="store_true", help="do not apply CPU quotas")
    parser.add_argument("--power-backend", default="utilization:rpi4b",
                        help="meter of the emulated agents (default: a Raspberry Pi 4 "
                             "utilization model, labelled estimated; 'auto' meters the host)")
    parser.add_argument("--connect-timeout", type=float, default=120.0)


def fleet_specs(count: int, use_quota: bool, power_backend: str) -> List[AgentSpec]:
    specs = []
    for i in range(count):
        quota, link = DEVICE_CLASSES[i % len(DEVICE_CLASSES)]
        specs.append(AgentSpec(f"dev-{i}", cpu_quota=quota if use_quota else 0.0, link=link,
                               power_backend=power_backend))
    return specs


def _mbps(bps: float) -> float:
    return round(bps / 1e6, 3)


def exercise_devices(srv: ServerThread, names: List[str], size_bytes: int,
                     seed: int) -> List[Dict[str, Any]]:
    """Compute, upload and download on every device; verify every byte."""
    server = srv.server
    rows = {name: {"device": name} for name in names}
    # One at a time: the emulated devices share two cores. The phase lasts
    # several CFS periods so a CPU quota shows in full.
    for name in names:
        profile = server.profile(name)
        result = srv.call(server.command(name, "compute", {"n": 512, "iterations": 100,
                                                           "run_id": "quickstart"}, 120))
        rows[name].update({
            "cpu_quota": profile.cpu_quota, "matmul_gflops": round(profile.matmul_gflops, 2),
            "compute_s": result["seconds"], "compute_j": result["energy_j"],
            "power": result["power_backend"], "provenance": result["provenance"],
        })
    uploads = srv.call(server.broadcast(
        names, "upload_synthetic", {"size_bytes": size_bytes, "run_id": "quickstart"},
        timeout_s=600, per_device_args={n: {"key": f"qs/{n}", "seed": seed + i}
                                        for i, n in enumerate(names)}))
    for name in names:
        up = uploads[name]
        if isinstance(up, Exception):
            raise up
        received = srv.call(server.receive(name, f"qs/{name}", timeout_s=30))
        if tensor_checksum(received.tensors["x"]) != up["checksum"]:
            raise AssertionError(f"{name}: uploaded tensor differs from what was sent")
        rows[name].update({
            "up_bytes": up["bytes"], "up_s": up["seconds"], "up_mbps": _mbps(up["rate_bps"]),
            "up_set_mbps": _mbps(up["set_rate_bps"]), "up_j": up["energy_j"],
        })
    payload = torch.randn(size_bytes // 4, generator=torch.Generator().manual_seed(seed))
    srv.run(server.offer, "qs/down", {"x": payload})
    downloads = srv.call(server.broadcast(names, "download", {"key": "qs/down",
                                                              "run_id": "quickstart"}, 600))
    for name in names:
        down = downloads[name]
        if isinstance(down, Exception):
            raise down
        if down["checksums"]["x"] != tensor_checksum(payload):
            raise AssertionError(f"{name}: downloaded tensor differs from what was offered")
        rows[name].update({
            "down_bytes": down["bytes"], "down_s": down["seconds"],
            "down_mbps": _mbps(down["rate_bps"]),
            "down_set_mbps": _mbps(server.link(name).downlink_bps), "down_j": down["energy_j"],
        })
    return [rows[n] for n in names]


# A short transfer-learning pass (paper 000): tiny data, one epoch each.
TL_SHORT = TLConfig(lam=8, max_samples=2000, ae_epochs=3, cnn_epochs=8, tune_epochs=2,
                    scheme="iid", bandwidth_hz=2e6, run_id="quickstart-tl")
TL_COLUMNS = ["device", "rho", "w", "t_comp_s", "t_comm_s", "finish_s", "finish_pred_s",
              "accuracy", "provenance"]


async def short_transfer_learning(srv: ServerThread, names: List[str]):
    tl = TransferLearning(srv.server, names, TL_SHORT)
    try:
        await tl.configure()
        return await tl.run(tl.decide("proposed"), "quickstart")
    finally:
        tl.close()


# A short split-inference pass (paper 004): AlexNet on 64 x 64 inputs, TPOS-UAI
# picks each device's split point and slots, five timed inferences each.
SPLIT_SHORT = SplitConfig(model="alexnet", input_size=64, n_inferences=5, warmup=1,
                          profile_repeats=5, run_id="quickstart-split")
SPLIT_COLUMNS = ["device", "split", "slots", "e2e_s", "e2e_pred_s", "energy_j", "energy_pred_j",
                 "provenance"]


async def short_split_inference(srv: ServerThread, names: List[str]):
    split = SplitInference(srv.server, names, SPLIT_SHORT)
    try:
        await split.configure()
        return await split.run(split.decide(), "quickstart")
    finally:
        split.close()


# A short federated pass (paper 003): LeNet on 1,200 digits, 8-bit gradients,
# a few rounds under the proposed batch sizes and time slots, planned on the
# devices' measured gradient profiles and the link rates just measured.
FEEL_SHORT = FeelConfig(model="lenet", bits=8, max_samples=1200, deadline_s=120.0,
                        run_id="quickstart-feel")
FEEL_ROUNDS = 10
FEEL_COLUMNS = ["round", "global_batch", "round_s", "predicted_s", "slowest_work_s", "accuracy",
                "hashes_agree"]


async def short_federated(srv: ServerThread, rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    measured = {r["device"]: r for r in rows}
    fl = FederatedLearning(srv.server, list(measured), FEEL_SHORT)
    try:
        await fl.configure()
        up = {n: measured[n]["up_mbps"] * 1e6 for n in fl.devices}
        down = {n: measured[n]["down_mbps"] * 1e6 for n in fl.devices}
        plan = RoundPlan.from_solution(list(fl.devices), allocate(fl.problem(up, down), "proposed"))
        out = []
        for _ in range(FEEL_ROUNDS):
            record = await fl.run(plan)
            out.append({"round": record.round, "global_batch": record.global_batch,
                        "round_s": record.seconds, "predicted_s": record.predicted_s,
                        "slowest_work_s": record.slowest_work_s, "accuracy": fl.test_accuracy(),
                        "hashes_agree": record.hashes_agree, "missing": record.missing})
        return out
    finally:
        fl.close()


COLUMNS = ["device", "cpu_quota", "matmul_gflops", "compute_s", "compute_j", "up_bytes",
           "up_s", "up_mbps", "up_set_mbps", "down_bytes", "down_s", "down_mbps",
           "down_set_mbps", "up_j", "down_j", "power", "provenance"]


def run(args: argparse.Namespace) -> int:
    size_mb = args.size_mb if args.size_mb is not None else (1.0 if args.quick else 4.0)
    size_bytes = int(size_mb * 1024 * 1024)
    support, use_quota = quota_support(args.no_quota, args.external)
    writer = RunWriter.from_args(args, config={**vars(args), "cgroups": support,
                                               "size_bytes": size_bytes})
    with writer:
        specs = fleet_specs(args.agents, use_quota, args.power_backend)
        with local_testbed(writer, specs, listen=args.listen, external=args.external,
                           token=args.token, timeout_s=args.connect_timeout,
                           benchmark_s=0.6) as (srv, names):
            rows = exercise_devices(srv, names, size_bytes, args.seed)
            tl_run = srv.call(short_transfer_learning(srv, names))
            split_run = srv.call(short_split_inference(srv, names))
            feel_rows = srv.call(short_federated(srv, rows))
        writer.table("devices", rows)
        print(format_table(rows, COLUMNS))
        writer.table("transfer_learning", tl_run.rows)
        print(f"\ntransfer learning (paper 000, JUDBA): T predicted {tl_run.T_pred_s:.3f} s, "
              f"measured {tl_run.T_meas_s:.3f} s")
        print(format_table(tl_run.rows, TL_COLUMNS))
        writer.table("split_inference", split_run.rows)
        overhead = "n/a" if split_run.overhead_ms is None else f"{split_run.overhead_ms:.2f} ms"
        print(f"\nsplit inference (paper 004, TPOS-UAI): prediction error "
              f"{split_run.pred_error:.3f}, overhead {overhead}")
        print(format_table(split_run.rows, SPLIT_COLUMNS))
        writer.table("federated", feel_rows)
        print("\nfederated edge learning (paper 003, proposed batch sizes and slots; LeNet, b = 8):")
        print(format_table(feel_rows, FEEL_COLUMNS))
        print("energy provenance per device is in the 'provenance' column "
              "(measured = sensor, estimated = utilization model)")
        writer.plot("rates", bar_chart(
            [r["device"] for r in rows],
            {"up measured": [r["up_mbps"] for r in rows],
             "up set": [r["up_set_mbps"] for r in rows],
             "down measured": [r["down_mbps"] for r in rows],
             "down set": [r["down_set_mbps"] for r in rows]},
            ylabel="Mbit/s", title="Measured vs set link rates"))
        writer.summary({
            "devices": len(rows),
            "cgroups": support,
            "size_bytes": size_bytes,
            "per_device": {r["device"]: r for r in rows},
            "tl_T_pred_s": tl_run.T_pred_s,
            "tl_T_meas_s": tl_run.T_meas_s,
            "tl_accuracy_uploaders": tl_run.accuracy_uploaders,
            "tl_accuracy_finetuned": tl_run.accuracy_finetuned,
            "split_pred_error": split_run.pred_error,
            "split_overhead_ms": split_run.overhead_ms,
            "split_chosen_splits": split_run.chosen_splits,
            "feel_round_s": [r["round_s"] for r in feel_rows],
            "feel_predicted_round_s": feel_rows[0]["predicted_s"],
            "feel_hashes_agree": all(r["hashes_agree"] for r in feel_rows),
            "feel_accuracy": feel_rows[-1]["accuracy"],
            "min_up_fraction_of_set": min((r["up_mbps"] / r["up_set_mbps"] for r in rows
                                           if r["up_set_mbps"]), default=None),
            "provenance": {
                "per_device": "measured times, bytes and rates; energy as each row's provenance",
                "tl_T_meas_s, split_overhead_ms, feel_round_s, *accuracy*": "measured",
                "tl_T_pred_s, feel_predicted_round_s, split_chosen_splits": "modeled (the solvers)",
                "split_pred_error": "derived: measured end-to-end vs modeled eq. (24)",
            },
        })
        print(f"results: {writer.path}")
    return 0
