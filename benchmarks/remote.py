"""The client of a standing server's Control service.

``edgebed-bench SUITE --server HOST:PORT [--devices NAMES|key=value]``
submits the suite with its options (the same ``Options`` record a local
run resolves), follows it (log lines, progress, queue position) and, when
it ends, fetches its files into ``results/<suite>/<run-id>/``: the same
files a local run writes. Ctrl-C asks whether to cancel the run or detach
from it; a detached run goes on, and ``edgebed-bench fetch RUN`` gets it
later. The other verbs:

    edgebed-bench runs    --server HOST:PORT         the server's runs
    edgebed-bench fleet   --server HOST:PORT         its devices, links and states
    edgebed-bench watch   RUN --server HOST:PORT     follow a run again
    edgebed-bench cancel  RUN --server HOST:PORT
    edgebed-bench fetch   RUN --server HOST:PORT [--results DIR]

``--server`` defaults to ``$EDGEBED_SERVER``, ``--admin-token`` to
``$EDGEBED_ADMIN_TOKEN``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import grpc

from edgebed.proto import control_pb2 as cpb
from edgebed.proto import control_pb2_grpc
from edgebed.proto.channel import CHANNEL_OPTIONS, auth_metadata
from edgebed.proto.contracts.base import to_args
from edgebed.results import format_table
from edgebed.testbed import add_server_arguments

VERBS = ("runs", "fleet", "watch", "cancel", "fetch")
ENDED = ("done", "failed", "cancelled")


class Client:
    def __init__(self, address: str, admin_token: Optional[str], tls_ca: Optional[str] = None):
        if not address or ":" not in address:
            raise ValueError(f"--server must be HOST:PORT, got {address!r}")
        if tls_ca:
            with open(tls_ca, "rb") as fh:
                creds = grpc.ssl_channel_credentials(fh.read())
            self.channel = grpc.secure_channel(address, creds, options=CHANNEL_OPTIONS)
        else:
            self.channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        self.stub = control_pb2_grpc.ControlStub(self.channel)
        self.metadata = auth_metadata(admin_token)
        self.address = address

    def submit(self, suite: str, options: Any, devices: str, count: int) -> cpb.RunInfo:
        names, selector = ([], devices) if "=" in devices else (
            [d for d in devices.split(",") if d], "")
        return self.stub.Submit(cpb.SubmitRequest(
            suite=suite, options_json=json.dumps(to_args(options)), devices=names,
            selector=selector, count=count, command=sys.argv), metadata=self.metadata)

    def follow(self, run_id: str, say=print) -> cpb.RunInfo:
        """Print what the run says until it ends; its final state."""
        last: Optional[cpb.RunInfo] = None
        position, shown = -1, -1.0
        for event in self.stub.Watch(cpb.WatchRequest(run_id=run_id), metadata=self.metadata):
            body = event.WhichOneof("body")
            if body == "log":
                say(event.log)
            elif body == "state":
                last = event.state
                if last.state == "queued" and last.queue_position != position:
                    position = last.queue_position
                    say(f"[{run_id}] queued, position {position}: waiting for "
                        f"{', '.join(last.devices)}")
                elif last.state == "running" and last.progress_text and \
                        last.progress - shown >= 0.01:
                    shown = last.progress
                    say(f"[{run_id}] {100 * last.progress:.0f}% {last.progress_text}")
        assert last is not None, "a watch always ends with the run's state"
        return last

    def fetch(self, run_id: str, root: Path, suite: str) -> Path:
        dest = root / suite / run_id
        dest.mkdir(parents=True, exist_ok=True)
        handle = None
        for chunk in self.stub.Fetch(cpb.RunRef(run_id=run_id), metadata=self.metadata):
            path = dest / chunk.path
            if handle is None:
                if path.resolve().parent != dest.resolve() and dest.resolve() not in \
                        path.resolve().parents:
                    raise ValueError(f"the server sent a file outside the run: {chunk.path!r}")
                path.parent.mkdir(parents=True, exist_ok=True)
                handle = open(path, "wb")  # noqa: SIM115 - closed at the file's last chunk
            handle.write(chunk.data)
            if chunk.last:
                handle.close()
                handle = None
        return dest

    def info(self, run_id: str) -> cpb.RunInfo:
        for run in self.stub.ListRuns(cpb.ListRunsRequest(), metadata=self.metadata).runs:
            if run.run_id == run_id:
                return run
        raise ValueError(f"no run {run_id!r} on {self.address}")


def _ask_cancel() -> bool:
    """After Ctrl-C: cancel (True) or detach (False)? Detach when nobody can answer."""
    if not sys.stdin.isatty():
        print("\ninterrupted: detaching (the run goes on; cancel it with `edgebed-bench "
              "cancel RUN`)", file=sys.stderr)
        return False
    try:
        answer = input("\ncancel the run, or detach and let it go on? [c/d] ").strip().lower()
    except (EOFError, KeyboardInterrupt):
        return False
    return answer.startswith("c")


def run_remote(args: argparse.Namespace, options: Any) -> int:
    """Submit ``args.suite`` with ``options`` to ``args.server``; follow it; fetch it."""
    client = Client(args.server, args.admin_token, args.tls_ca)
    try:
        info = client.submit(args.suite, options, args.devices, args.count)
    except grpc.RpcError as exc:
        print(f"edgebed-bench {args.suite}: error: {exc.details()}", file=sys.stderr)
        return 2
    print(f"run {info.run_id} submitted to {args.server}: {args.suite} on "
          f"{', '.join(info.devices)}")
    try:
        final = client.follow(info.run_id)
    except KeyboardInterrupt:
        if _ask_cancel():
            final = client.stub.Cancel(cpb.RunRef(run_id=info.run_id), metadata=client.metadata)
            print(f"run {info.run_id}: cancel asked; its partial results are kept")
            final = client.follow(info.run_id)
        else:
            print(f"detached from run {info.run_id}; `edgebed-bench fetch {info.run_id} "
                  f"--server {args.server}` gets its files")
            return 130
    dest = client.fetch(info.run_id, Path(args.results), args.suite)
    print(f"run {info.run_id} {final.state}" + (f": {final.error}" if final.error else "") +
          f"; files in {dest}")
    if getattr(args, "tensorboard", None):  # the fetched run, as a local run writes it live
        from edgebed.results.tensorboard import write_tensorboard
        print(f"tensorboard: {write_tensorboard(dest, Path(args.tensorboard))}")
    return 0 if final.state == "done" else 1


# ---------------------------------------------------------------- verbs

def _verb_parser(verb: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"edgebed-bench {verb}",
                                     description=__doc__.splitlines()[0])
    if verb in ("watch", "cancel", "fetch"):
        parser.add_argument("run_id", metavar="RUN")
    parser.add_argument("--results", default="results", metavar="DIR",
                        help="fetch: root of the results tree (default: %(default)s)")
    add_server_arguments(parser)
    return parser


def main_verb(argv: Sequence[str]) -> int:
    verb = argv[0]
    parser = _verb_parser(verb)
    try:
        args = parser.parse_args(list(argv[1:]))
    except SystemExit as exc:
        return int(exc.code or 0)
    if not args.server:
        print(f"edgebed-bench {verb}: error: --server HOST:PORT (or $EDGEBED_SERVER) is needed",
              file=sys.stderr)
        return 2
    try:
        client = Client(args.server, args.admin_token, args.tls_ca)
        if verb == "runs":
            runs = client.stub.ListRuns(cpb.ListRunsRequest(), metadata=client.metadata).runs
            print(format_table([_run_row(r) for r in runs],
                               ["run_id", "suite", "state", "queue", "progress", "devices",
                                "submitted", "error"]))
        elif verb == "fleet":
            fleet = client.stub.Fleet(cpb.FleetRequest(), metadata=client.metadata)
            print(format_table([_device_row(d) for d in fleet.devices],
                               ["name", "state", "run_id", "cpu", "cores", "gflops", "power",
                                "up_mbps", "down_mbps", "rtt_ms", "heartbeat_s", "labels"]))
        elif verb == "watch":
            final = client.follow(args.run_id)
            print(f"run {args.run_id} {final.state}")
        elif verb == "cancel":
            info = client.stub.Cancel(cpb.RunRef(run_id=args.run_id), metadata=client.metadata)
            print(f"run {args.run_id}: {info.state} (cancel asked)")
        else:  # fetch
            info = client.info(args.run_id)
            dest = client.fetch(args.run_id, Path(args.results), info.suite)
            print(f"run {args.run_id} ({info.state}): files in {dest}")
        return 0
    except grpc.RpcError as exc:
        print(f"edgebed-bench {verb}: error: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"edgebed-bench {verb}: error: {exc}", file=sys.stderr)
        return 2


def _run_row(r: cpb.RunInfo) -> dict:
    return {"run_id": r.run_id, "suite": r.suite, "state": r.state,
            "queue": r.queue_position or None, "progress": round(r.progress, 2),
            "devices": ",".join(r.devices), "error": r.error or None,
            "submitted": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.submitted_unix_s))}


def _device_row(d: cpb.DeviceInfo) -> dict:
    link = d.link if d.HasField("link") else None
    return {"name": d.name, "state": d.state, "run_id": d.run_id or None,
            "cpu": d.profile.cpu_model[:30], "cores": d.profile.cpu_cores,
            "gflops": round(d.profile.matmul_gflops, 1), "power": d.profile.power_backend,
            "up_mbps": round(link.up_capacity_bps / 1e6, 2) if link else None,
            "down_mbps": round(link.down_capacity_bps / 1e6, 2) if link else None,
            "rtt_ms": round(link.rtt_ms, 2) if link else None,
            "heartbeat_s": round(d.heartbeat_age_s, 1) if d.heartbeat_age_s >= 0 else None,
            "labels": ",".join(f"{k}={v}" for k, v in sorted(d.labels.items()))}
