"""The Control gRPC service: submit, list, watch, cancel and fetch runs, and
list the fleet. Business only; the guard interceptor checks the caller and
maps errors to statuses as it does for the device-facing service.

Who may call: a client holding the admin token (``--admin-token`` or
``EDGEBED_ADMIN_TOKEN``). A server started without one serves Control to
loopback callers only, so the experiment plane is never open to the lab
network by accident; device tokens never grant it.
"""
import asyncio
import logging
import time
from typing import Dict, Optional

import grpc

from edgebed.proto import control_pb2 as cpb
from edgebed.proto import control_pb2_grpc
from edgebed.server.control.plane import ControlPlane, device_labels
from edgebed.server.control.runs import Run, RunStore
from edgebed.server.identity import admin_check
from edgebed.server.servicer import Service, parse

logger = logging.getLogger(__name__)

SERVICE = "edgebed.v1.Control"
CHUNK_BYTES = 1024 * 1024


async def in_thread(fn, *args):
    """``fn(*args)`` in a worker thread: file I/O stays off the server's event
    loop (as the dashboard's ``HttpListener._in_thread``; 3.8 has no to_thread)."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def run_info(run: Run, plane: ControlPlane,
             positions: Optional[Dict[str, int]] = None) -> cpb.RunInfo:
    """``positions``: ``plane.queue_positions()``, computed once for a listing."""
    s = run.status
    position = (plane.queue_position(run) if positions is None
                else positions.get(run.run_id, 0))
    return cpb.RunInfo(run_id=s.run_id, suite=s.suite, state=s.state, devices=s.devices,
                       queue_position=position, progress=s.progress,
                       progress_text=s.progress_text, error=s.error,
                       submitted_unix_s=s.submitted_unix_s, started_unix_s=s.started_unix_s,
                       ended_unix_s=s.ended_unix_s, options_json=s.options_json)


class ControlServicer(control_pb2_grpc.ControlServicer):
    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane

    # Requests arrive as raw bytes (``control_service`` registers no
    # deserializer) and are parsed here, as the device-facing service does:
    # bytes that are not the message are the client's INVALID_ARGUMENT.

    async def Submit(self, raw, context):
        request = parse(cpb.SubmitRequest, raw)
        run = self.plane.submit(request.suite, request.options_json, list(request.devices),
                                request.selector, request.count, list(request.command))
        return run_info(run, self.plane)

    async def ListRuns(self, raw, context):
        parse(cpb.ListRunsRequest, raw)
        positions = self.plane.queue_positions()
        return cpb.RunList(runs=[run_info(r, self.plane, positions)
                                 for r in self.plane.store.listing()])

    async def Watch(self, raw, context):
        request = parse(cpb.WatchRequest, raw)
        run = self.plane.get(request.run_id)
        seq = request.from_seq
        yield cpb.RunEvent(seq=seq, state=run_info(run, self.plane))
        while True:
            events, ended = await run.events_since(seq)
            for seq, kind, payload in events:
                if kind == "log":
                    yield cpb.RunEvent(seq=seq, log=payload)
                elif kind == "span":
                    yield cpb.RunEvent(seq=seq, span_json=payload)
                else:
                    yield cpb.RunEvent(seq=seq, state=run_info(run, self.plane))
            if ended and not events:
                yield cpb.RunEvent(seq=seq, state=run_info(run, self.plane))
                return

    async def Cancel(self, raw, context):
        request = parse(cpb.RunRef, raw)
        return run_info(self.plane.cancel(request.run_id), self.plane)

    async def Fetch(self, raw, context):
        request = parse(cpb.RunRef, raw)
        run = self.plane.get(request.run_id)
        # Listing and reading happen in worker threads: a run of large files
        # (or a slow disk) must not stall every other RPC and the heartbeats.
        for path in await in_thread(lambda: list(run.files())):
            rel = str(path.relative_to(run.path))
            fh = await in_thread(open, path, "rb")
            try:
                data = await in_thread(fh.read, CHUNK_BYTES)
                while True:
                    following = await in_thread(fh.read, CHUNK_BYTES)
                    yield cpb.RunFile(path=rel, data=data, last=not following)
                    if not following:
                        break
                    data = following
            finally:
                fh.close()

    async def Fleet(self, raw, context):
        parse(cpb.FleetRequest, raw)
        server, now = self.plane.server, time.monotonic()
        devices = []
        for record in sorted(server.registry.all(), key=lambda r: r.name):
            link = server.links.get(record.name)
            info = cpb.DeviceInfo(
                name=record.name, profile=record.profile.to_proto(),
                labels=device_labels(record), state=self.plane.device_state(record.name),
                run_id=self.plane.claimed_by(record.name),
                heartbeat_age_s=now - record.session.last_heartbeat if record.session else -1.0,
                disconnect_reason=record.disconnect_reason)
            if link is not None:
                info.link.CopyFrom(cpb.LinkMeasurement(
                    up_capacity_bps=link.up_capacity_bps, down_capacity_bps=link.down_capacity_bps,
                    rtt_ms=link.rtt_ms, measured_unix_s=link.measured_unix_s,
                    provenance=link.provenance))
            devices.append(info)
        return cpb.FleetInfo(devices=devices)


def control_service(plane: ControlPlane, admin_token: Optional[str]) -> Service:
    # The generic handler the generated add_ControlServicer_to_server would
    # add, built here so the guard interceptor wraps it like the device service,
    # and without request deserializers: the methods parse the raw bytes.
    servicer = ControlServicer(plane)
    methods = {
        "Submit": grpc.unary_unary_rpc_method_handler(
            servicer.Submit, response_serializer=cpb.RunInfo.SerializeToString),
        "ListRuns": grpc.unary_unary_rpc_method_handler(
            servicer.ListRuns, response_serializer=cpb.RunList.SerializeToString),
        "Watch": grpc.unary_stream_rpc_method_handler(
            servicer.Watch, response_serializer=cpb.RunEvent.SerializeToString),
        "Cancel": grpc.unary_unary_rpc_method_handler(
            servicer.Cancel, response_serializer=cpb.RunInfo.SerializeToString),
        "Fetch": grpc.unary_stream_rpc_method_handler(
            servicer.Fetch, response_serializer=cpb.RunFile.SerializeToString),
        "Fleet": grpc.unary_unary_rpc_method_handler(
            servicer.Fleet, response_serializer=cpb.FleetInfo.SerializeToString),
    }
    return Service(SERVICE, grpc.method_handlers_generic_handler(SERVICE, methods),
                   admin_check(admin_token, plane.server.credentials))


def attach_control(server, state_dir, admin_token: Optional[str]) -> ControlPlane:
    """Make ``server`` a standing server: runs kept under ``state_dir``, the
    Control service beside the device-facing one. Call before the server
    starts, and ``start()`` the returned plane once it has."""
    plane = ControlPlane(server, RunStore(state_dir))
    server.add_service(control_service(plane, admin_token))
    return plane
