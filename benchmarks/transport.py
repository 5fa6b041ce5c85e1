"""Transport: Upload goodput vs a raw TCP socket, and shaped-rate accuracy.

Unshaped: a real agent process uploads 1, 16 and 128 MiB float32 tensors to
the edge server on loopback; a plain TCP sender process moves the same bytes
to a plain receiver in the same run, and so does a bare gRPC client stream of
1 MiB byte messages (what Python gRPC alone costs). Shaped: the agent uploads at 1, 10 and
100 Mbit/s and the achieved goodput is compared with the set rate. Both are
medians over repetitions. summary.json keys: ``loopback_ratio_vs_raw`` (the
minimum over sizes) and ``shaped_fraction`` (the minimum over rates).
"""
import argparse
import statistics
from typing import Any, Dict, List

from edgebed.benchmarks import baregrpc, rawtcp
from edgebed.benchmarks.fleet import AgentSpec, Fleet, ServerThread
from edgebed.benchmarks.plots import bar_chart
from edgebed.benchmarks.results import RunWriter, format_table, progress
from edgebed.server.core import ServerConfig

MIB = 1024 * 1024
SIZES_MIB = [1, 16, 128]
RATES_BPS = [1e6, 10e6, 100e6]
SHAPED_SECONDS = 3.0  # each shaped transfer lasts about this long


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeats", type=int, default=None,
                        help="repetitions per point, median reported (default 5, --quick 3)")


def _upload(srv: ServerThread, name: str, nbytes: int, rate_bps: float, seed: int) -> Dict[str, Any]:
    key = f"transport/{nbytes}/{rate_bps}/{seed}"
    result = srv.call(srv.server.command(name, "upload_synthetic", {
        "size_bytes": nbytes, "key": key, "rate_bps": rate_bps, "seed": seed,
        "run_id": "transport"}, 600))
    srv.call(srv.server.receive(name, key, timeout_s=60))  # drain the inbox
    return result


def run(args: argparse.Namespace) -> int:
    repeats = args.repeats or (3 if args.quick else 5)
    shaped_s = SHAPED_SECONDS * (0.5 if args.quick else 1.0)
    writer = RunWriter.from_args(args, config={**vars(args), "repeats": repeats,
                                               "shaped_seconds": shaped_s})
    rows: List[Dict[str, Any]] = []
    with writer:
        srv = ServerThread(ServerConfig(listen="127.0.0.1:0", max_transfer_bytes=512 * MIB))
        srv.run(srv.server.add_span_sink, writer.event)
        fleet = Fleet(srv.address, [AgentSpec("sender", power_backend="auto")],
                      log_dir=writer.path / "agents").start()
        receiver = rawtcp.RawReceiver()
        bare = baregrpc.BareReceiver()
        try:
            srv.call(srv.server.wait_for_devices(1, 120))
            for size in progress(SIZES_MIB, desc="loopback sizes"):
                nbytes = size * MIB
                # Small transfers are short and noisy: repeat them more.
                count = repeats * max(1, 16 // size)
                _upload(srv, "sender", nbytes, 0.0, args.seed)  # warm-up
                grpc_s = [_upload(srv, "sender", nbytes, 0.0, args.seed + r)["seconds"]
                          for r in range(count)]
                raw_s = rawtcp.measure(receiver, nbytes, count + 1, args.seed)[1:]  # warm-up
                bare_s = baregrpc.measure(bare, nbytes, count + 1)[1:]
                grpc_bps = 8 * nbytes / statistics.median(grpc_s)
                raw_bps = 8 * nbytes / statistics.median(raw_s)
                bare_bps = 8 * nbytes / statistics.median(bare_s)
                rows.append({"kind": "loopback", "size_mib": size, "grpc_mbps": grpc_bps / 1e6,
                             "raw_tcp_mbps": raw_bps / 1e6, "bare_grpc_mbps": bare_bps / 1e6,
                             "ratio": grpc_bps / raw_bps, "vs_bare_grpc": grpc_bps / bare_bps,
                             "repeats": count})
            for rate in progress(RATES_BPS, desc="shaped rates"):
                nbytes = int(rate * shaped_s / 8) // 4 * 4
                achieved = [_upload(srv, "sender", nbytes, rate, args.seed + r)["rate_bps"]
                            for r in range(repeats)]
                median = statistics.median(achieved)
                rows.append({"kind": "shaped", "size_mib": nbytes / MIB, "set_mbps": rate / 1e6,
                             "grpc_mbps": median / 1e6, "fraction": median / rate})
        finally:
            receiver.close()
            bare.close()
            fleet.stop()
            srv.stop()
        writer.table("transport", rows)
        print(format_table(rows, ["kind", "size_mib", "set_mbps", "grpc_mbps", "raw_tcp_mbps",
                                  "bare_grpc_mbps", "ratio", "vs_bare_grpc", "fraction"]))
        loop_rows = [r for r in rows if r["kind"] == "loopback"]
        shaped_rows = [r for r in rows if r["kind"] == "shaped"]
        writer.plot("loopback", bar_chart(
            [f"{r['size_mib']} MiB" for r in loop_rows],
            {"edgebed Upload": [r["grpc_mbps"] for r in loop_rows],
             "bare gRPC": [r["bare_grpc_mbps"] for r in loop_rows],
             "raw TCP": [r["raw_tcp_mbps"] for r in loop_rows]},
            ylabel="goodput (Mbit/s, measured)", title="Upload goodput on loopback"))
        writer.plot("shaped", bar_chart(
            [f"{r['set_mbps']:g} Mbit/s" for r in shaped_rows],
            {"fraction of set rate": [r["fraction"] for r in shaped_rows]},
            ylabel="achieved / set (measured)", title="Shaped Upload accuracy"))
        summary = writer.summary({
            "loopback_ratio_vs_raw": min(r["ratio"] for r in loop_rows),
            # Python gRPC itself, without edgebed's framing, checksums or tensors.
            "bare_grpc_ratio_vs_raw": min(r["bare_grpc_mbps"] / r["raw_tcp_mbps"]
                                          for r in loop_rows),
            "loopback_ratio_vs_bare_grpc": min(r["vs_bare_grpc"] for r in loop_rows),
            "shaped_fraction": min(r["fraction"] for r in shaped_rows),
            "shaped_fraction_max": max(r["fraction"] for r in shaped_rows),
            "provenance": "measured",
            "rows": rows,
        })
        print(f"summary: {summary}")
    return 0
