"""The edge server: its state, its lifecycle and the async API orchestrators use.

``EdgeServer`` is the server's state (``state.ServerState``: the registry,
the upload inbox, the download outbox, Infer handlers, upload validators and
span sinks) plus the gRPC server it starts (``servicer.create_grpc_server``)
and a watchdog that expires devices whose heartbeats stopped. Orchestrators
and benchmarks only talk to this class:

    server = EdgeServer(ServerConfig(listen="127.0.0.1:0"))
    port = await server.start()
    await server.wait_for_devices(4, timeout_s=60)
    pong = await server.call("dev-0", runtime.PING, runtime.PingIns())
    upload = await server.receive("dev-0", "latents", timeout_s=30)
    server.offer("cnn", {"w": weights})
    await server.stop()
"""
import asyncio
import logging
from typing import Any, Dict, List, Mapping, Optional, TypeVar, Union

import torch

from edgebed.proto.codec import QuantArg
from edgebed.proto.contracts.base import CommandSpec
from edgebed.proto.records import CapabilityProfile, LinkProfile
from edgebed.server.config import ServerConfig
from edgebed.server.registry import DeviceRecord
from edgebed.server.errors import ServerError
from edgebed.server.servicer import Service, create_grpc_server
from edgebed.server.state import InferHandler, InferReply, ServerState, SpanSink, UploadValidator
from edgebed.server.transfers import ANY_DEVICE, Offer, ReceivedTransfer

__all__ = ["EdgeServer", "InferHandler", "InferReply", "ServerConfig", "SpanSink",
           "UploadValidator"]

logger = logging.getLogger(__name__)

Res = TypeVar("Res")


class EdgeServer(ServerState):
    """The server's state plus its lifecycle and the orchestrators' API."""

    def __init__(self, config: ServerConfig) -> None:
        super().__init__(config)
        self._grpc = None
        self._health = None
        self._watchdog: Optional["asyncio.Task[None]"] = None
        self._services: List[Service] = []
        self.port: Optional[int] = None

    # ------------------------------------------------------------ lifecycle
    def add_service(self, service: Service) -> None:
        """Serve another gRPC service beside the device-facing one (a standing
        server's Control service); before ``start``."""
        if self._grpc is not None:
            raise ServerError("add services before the server starts")
        self._services.append(service)

    async def start(self) -> int:
        self._grpc, self.port, self._health = await create_grpc_server(self, self._services)
        await self._grpc.start()
        self._watchdog = asyncio.get_running_loop().create_task(self._expire_loop())
        logger.info("edge server listening on port %d", self.port)
        return self.port

    async def stop(self, grace_s: float = 2.0) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        for record in self.registry.connected():
            self.registry.detach(record.session, "server shutting down", expected=True)
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        if self._grpc is not None:
            await self._grpc.stop(grace_s)
        logger.info("edge server stopped")

    async def _expire_loop(self) -> None:
        """Drop what nobody will use: silent sessions at once, uncollected
        uploads, offers and gone devices after ``retain_s``."""
        while True:
            await asyncio.sleep(self.config.heartbeat_interval_s)
            self.registry.expire_silent(self.config.heartbeat_timeout_s)
            self.inbox.expire(self.config.retain_s)
            self.outbox.expire(self.config.retain_s)
            for name in self.registry.forget_gone(self.config.retain_s):
                self.links.forget(name)

    # ------------------------------------------------------------ devices
    def device_names(self) -> List[str]:
        return sorted(r.name for r in self.registry.connected())

    def profile(self, device: str) -> CapabilityProfile:
        return self.registry.get(device).profile

    async def wait_for_devices(self, count: int, timeout_s: float = 60.0) -> List[DeviceRecord]:
        return await self.registry.wait_for(count, timeout_s)

    def set_link(self, device: str, link: LinkProfile) -> None:
        """Change the rates the server paces this device's downloads and Infer
        replies to (when an offer does not give its own), and that workloads
        read as the device's link."""
        self.registry.get(device).link = link

    # ------------------------------------------------------------ commands
    async def command(
        self, device: str, kind: str, args: Optional[Dict[str, Any]] = None,
        timeout_s: Optional[float] = None,
    ) -> Dict[str, Any]:
        """Run one handler on one device with raw JSON arguments; returns its
        result or raises CommandFailed / CommandTimeout / DeviceDisconnected.
        Workloads use ``call`` (typed) or their template's ``dispatch``."""
        session = self.registry.session(device)
        result = await session.command(kind, args or {}, timeout_s)
        return result.result

    async def call(self, device: str, spec: CommandSpec[Any, Res], request: Any,
                   timeout_s: Optional[float] = None) -> Res:
        """A command by its contract: the typed result, or CommandFailed /
        CommandTimeout / DeviceDisconnected / ContractError (a result outside
        the contract)."""
        data = await self.command(device, spec.kind, spec.encode_request(request), timeout_s)
        return spec.decode_result(data)

    # ------------------------------------------------------------ tensors
    async def receive(self, device: str, key: str, timeout_s: Optional[float] = None) -> ReceivedTransfer:
        """Await a validated upload ``key`` from ``device``."""
        return await self.inbox.get(device, key, timeout_s)

    def offer(
        self, key: str, tensors: Mapping[str, torch.Tensor], *, device: str = ANY_DEVICE,
        rate_bps: Union[None, float, Mapping[str, float]] = None, quant: QuantArg = None,
        meta: Optional[Mapping[str, str]] = None,
    ) -> Offer:
        """Make tensors downloadable under ``key`` (by one device or all).

        ``rate_bps`` None paces each download at that device's downlink rate;
        a mapping gives each device its own rate for the same encoded tensors.
        """
        return self.outbox.offer(key, tensors, device=device, rate_bps=rate_bps,
                                 quant=quant, meta=meta)

