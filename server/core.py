"""The edge server's state and the async API orchestrators use.

``EdgeServer`` owns the registry, the upload inbox, the download outbox,
the split-inference handlers and the span sinks; it starts the gRPC server
(``servicer.create_grpc_server``) and a watchdog that expires devices whose
heartbeats stopped. Orchestrators and benchmarks only talk to this class:

    server = EdgeServer(ServerConfig(listen="127.0.0.1:0"))
    port = await server.start()
    await server.wait_for_devices(4, timeout_s=60)
    results = await server.broadcast(server.device_names(), "ping", {})
    upload = await server.receive("dev-0", "latents", timeout_s=30)
    server.offer("cnn", {"w": weights})
    await server.stop()
"""
import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, Iterable, List, Mapping, Optional, Union

import torch

from edgebed.proto import edge_pb2 as pb
from edgebed.proto.codec import QuantArg
from edgebed.proto.records import CapabilityProfile, LinkProfile, Span
from edgebed.server.errors import ServerError
from edgebed.server.registry import DeviceRecord, DeviceRegistry
from edgebed.server.transfers import ANY_DEVICE, Inbox, Offer, Outbox, ReceivedTransfer

logger = logging.getLogger(__name__)

# A plain function (run in a worker thread) or a coroutine function (awaited on
# the server's loop: it must not block it, and is cancelled when the stream breaks).
InferHandler = Callable[[ReceivedTransfer],
                        Union[Mapping[str, torch.Tensor], Awaitable[Mapping[str, torch.Tensor]]]]
UploadValidator = Callable[[ReceivedTransfer], None]
SpanSink = Callable[[Span], None]


@dataclass(frozen=True)
class ServerConfig:
    listen: str = "127.0.0.1:0"
    token: Optional[str] = None
    tls_cert: Optional[str] = None  # PEM paths; both or neither
    tls_key: Optional[str] = None
    max_transfer_bytes: int = 2 * 1024 ** 3
    heartbeat_interval_s: float = 2.0
    heartbeat_timeout_s: float = 15.0

    def __post_init__(self) -> None:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("--tls-cert and --tls-key must be given together")
        if self.max_transfer_bytes <= 0:
            raise ValueError(f"max_transfer_bytes must be positive, got {self.max_transfer_bytes}")
        if not 0 < self.heartbeat_interval_s < self.heartbeat_timeout_s:
            raise ValueError(
                "need 0 < heartbeat interval < heartbeat timeout, got "
                f"{self.heartbeat_interval_s} and {self.heartbeat_timeout_s}"
            )


class EdgeServer:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.registry = DeviceRegistry()
        self.inbox = Inbox()
        self.outbox = Outbox()
        self.infer_handlers: Dict[str, InferHandler] = {}
        self._validators: Dict[str, UploadValidator] = {}
        self._span_sinks: List[SpanSink] = []
        self._grpc = None
        self._health = None
        self._watchdog: Optional["asyncio.Task[None]"] = None
        self.port: Optional[int] = None
        self.uploads_in_flight = 0  # streams being received right now

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> int:
        from edgebed.server.servicer import create_grpc_server

        self._grpc, self.port, self._health = await create_grpc_server(self)
        await self._grpc.start()
        self._watchdog = asyncio.get_running_loop().create_task(self._expire_loop())
        logger.info("edge server listening on port %d", self.port)
        return self.port

    async def stop(self, grace_s: float = 2.0) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        for record in self.registry.connected():
            self.registry.detach(record.session, "server shutting down")
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        if self._grpc is not None:
            await self._grpc.stop(grace_s)
        logger.info("edge server stopped")

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_interval_s)
            self.registry.expire_silent(self.config.heartbeat_timeout_s)

    # ------------------------------------------------------------ devices
    def device_names(self) -> List[str]:
        return sorted(r.name for r in self.registry.connected())

    def profile(self, device: str) -> CapabilityProfile:
        return self.registry.get(device).profile

    async def wait_for_devices(self, count: int, timeout_s: float = 60.0) -> List[DeviceRecord]:
        return await self.registry.wait_for(count, timeout_s)

    def set_link(self, device: str, link: LinkProfile) -> None:
        """Change a device's default shaped rates; the agent is told at once."""
        record = self.registry.get(device)
        record.link = link
        if record.connected:
            assert record.session is not None
            record.session.send(pb.ServerMessage(set_link=link.to_proto()))

    def link(self, device: str) -> LinkProfile:
        return self.registry.get(device).link

    # ------------------------------------------------------------ commands
    async def command(
        self, device: str, kind: str, args: Optional[Dict[str, Any]] = None,
        timeout_s: Optional[float] = None,
    ) -> Dict[str, Any]:
        """Run one handler on one device; returns its result or raises
        CommandFailed / CommandTimeout / DeviceDisconnected."""
        session = self.registry.session(device)
        result = await session.command(kind, args or {}, timeout_s)
        return result.result

    async def broadcast(
        self, devices: Iterable[str], kind: str, args: Optional[Dict[str, Any]] = None,
        timeout_s: Optional[float] = None,
        per_device_args: Optional[Mapping[str, Dict[str, Any]]] = None,
    ) -> Dict[str, Any]:
        """Run a command on many devices at once.

        Returns {device: result dict or the exception it raised}: one device
        failing or dying never hides the others' results.
        """
        names = list(devices)

        async def one(name: str) -> Any:
            merged = dict(args or {})
            merged.update((per_device_args or {}).get(name, {}))
            try:
                return await self.command(name, kind, merged, timeout_s)
            except ServerError as exc:
                logger.warning("%s", exc)
                return exc

        results = await asyncio.gather(*(one(n) for n in names))
        return dict(zip(names, results))

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

    def add_upload_validator(self, key_prefix: str, validator: UploadValidator) -> None:
        """Check uploads whose key starts with ``key_prefix`` before storing them.

        The validator raises ``edgebed.proto.errors.CodecError`` naming the
        problem; the device then gets INVALID_ARGUMENT and nothing is stored.
        """
        self._validators[key_prefix] = validator

    def remove_upload_validator(self, key_prefix: str) -> None:
        self._validators.pop(key_prefix, None)

    def validate_upload(self, received: ReceivedTransfer) -> None:
        for prefix, validator in self._validators.items():
            if received.key.startswith(prefix):
                validator(received)

    def forget(self, key_prefix: str) -> None:
        """Withdraw offers and drop uncollected uploads under ``key_prefix``:
        a finished run must not leave tensors a later run could pick up."""
        self.outbox.withdraw_prefix(key_prefix)
        self.inbox.discard_prefix(key_prefix)

    def add_infer_handler(self, name: str, handler: InferHandler) -> None:
        """Serve split-inference requests whose meta names ``handler``."""
        self.infer_handlers[name] = handler

    # ------------------------------------------------------------ telemetry
    def add_span_sink(self, sink: SpanSink) -> None:
        self._span_sinks.append(sink)

    def remove_span_sink(self, sink: SpanSink) -> None:
        if sink in self._span_sinks:
            self._span_sinks.remove(sink)

    def record_span(self, span: Span) -> None:
        for sink in self._span_sinks:
            try:
                sink(span)
            except Exception:  # a broken sink must not break the session
                logger.exception("span sink failed")
