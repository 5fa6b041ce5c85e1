"""The device agent's control loop.

Dial out (boards sit behind NAT), Register with the probed capability
profile, then hold one Session stream: heartbeats and spans up, commands and
link settings down. Commands run in worker threads through the handler
registry; their results go back up the stream. When the server goes away the
agent reconnects with exponential backoff and registers again; handler state
survives. A wrong token is fatal: retrying cannot fix it.
"""
import asyncio
import collections
import concurrent.futures
import logging
import random
import time
import traceback
from dataclasses import dataclass, field
from typing import AsyncIterator, Deque, Optional

import grpc

from edgebed import EdgebedError
from edgebed.device.handlers import HandlerContext, HandlerRegistry
from edgebed.device.transfer_client import TransferClient
from edgebed.proto import edge_pb2 as pb
from edgebed.proto import edge_pb2_grpc
from edgebed.proto.channel import CHANNEL_OPTIONS, auth_metadata
from edgebed.proto.codec import DEFAULT_MAX_TRANSFER_BYTES
from edgebed.proto.contracts.base import ContractError
from edgebed.proto.records import CapabilityProfile, Command, CommandResult, LinkProfile, Span

logger = logging.getLogger(__name__)

AGENT_VERSION = "0.1.0"
SPAN_BUFFER = 10000  # spans kept while disconnected, oldest dropped first
CLOSE_WAIT_S = 2.0   # how long a stopping agent waits for the server to end its session


class AgentFatal(EdgebedError):
    """The agent cannot go on (e.g. the server rejected its token)."""


@dataclass(frozen=True)
class AgentConfig:
    server: str
    name: str
    token: Optional[str] = None   # this device's enrolled credential (or the shared token)
    tls_ca: Optional[str] = None  # PEM of the CA that signed the server cert
    tls_cert: Optional[str] = None  # mutual TLS: this device's certificate and key (PEM)
    tls_key: Optional[str] = None
    # What a server may make this device hold at once.
    max_download_bytes: int = DEFAULT_MAX_TRANSFER_BYTES
    link: LinkProfile = field(default_factory=LinkProfile)
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 15.0
    workers: int = 2

    def __post_init__(self) -> None:
        if ":" not in self.server:
            raise ValueError(f"--server must be HOST:PORT, got {self.server!r}")
        if not self.name or any(c.isspace() for c in self.name):
            raise ValueError(f"--name must be non-empty without spaces, got {self.name!r}")
        if not 0 < self.backoff_initial_s <= self.backoff_max_s:
            raise ValueError("need 0 < initial backoff <= maximum backoff")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("--tls-cert and --tls-key must be given together")
        if (self.tls_cert or self.tls_key) and not self.tls_ca:
            raise ValueError("a client certificate (--tls-cert) needs --tls-ca, the fleet CA")
        if self.max_download_bytes <= 0:
            raise ValueError(f"the download cap must be positive, got {self.max_download_bytes}")


class Agent:
    def __init__(self, config: AgentConfig, handlers: HandlerRegistry,
                 profile: CapabilityProfile, recorder) -> None:
        self.config = config
        self.handlers = handlers
        self.profile = profile
        self.context = HandlerContext(config.name, recorder, None)
        recorder.sink = self._emit_span
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=config.workers, thread_name_prefix=f"{config.name}-handler")
        self._spans: Deque[Span] = collections.deque(maxlen=SPAN_BUFFER)
        self._outgoing: Optional["asyncio.Queue[pb.DeviceMessage]"] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    # ------------------------------------------------------------ channels
    def _channel(self, aio: bool):
        module = grpc.aio if aio else grpc
        if self.config.tls_ca:
            with open(self.config.tls_ca, "rb") as ca:
                root = ca.read()
            key = cert = None
            if self.config.tls_cert:  # mutual TLS: the certificate names this device
                with open(self.config.tls_key, "rb") as k, open(self.config.tls_cert, "rb") as c:
                    key, cert = k.read(), c.read()
            creds = grpc.ssl_channel_credentials(root, key, cert)
            return module.secure_channel(self.config.server, creds, options=CHANNEL_OPTIONS)
        return module.insecure_channel(self.config.server, options=CHANNEL_OPTIONS)

    # ------------------------------------------------------------ main loop
    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, reconnecting whenever the link drops."""
        self._loop = asyncio.get_running_loop()
        backoff = self.config.backoff_initial_s
        try:
            while not stop.is_set():
                opened = await self._serve_once(stop)
                if stop.is_set():
                    break
                if opened:
                    backoff = self.config.backoff_initial_s
                # Jitter keeps a fleet from reconnecting in lockstep.
                delay = backoff * random.uniform(0.8, 1.2)
                logger.info("%s: reconnecting in %.1f s", self.config.name, delay)
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except asyncio.TimeoutError:
                    pass
                backoff = min(backoff * 2, self.config.backoff_max_s)
        finally:
            self._executor.shutdown(wait=False)

    async def _serve_once(self, stop: asyncio.Event) -> bool:
        """One connection: register, run the session. True if a session opened."""
        metadata = auth_metadata(self.config.token, self.config.name)
        channel = self._channel(aio=True)
        data_channel = self._channel(aio=False)
        opened = False
        try:
            stub = edge_pb2_grpc.EdgeServiceStub(channel)
            reply = await stub.Register(pb.RegisterRequest(
                name=self.config.name, profile=self.profile.to_proto(),
                agent_version=AGENT_VERSION), metadata=metadata, timeout=10)
            self.context.transfers = TransferClient(data_channel, self.config.name, self.config.token,
                                                    self.config.max_download_bytes)
            self._outgoing = asyncio.Queue()
            self._outgoing.put_nowait(pb.DeviceMessage(open=pb.SessionOpen(
                device_id=reply.device_id, session_key=reply.session_key)))
            while self._spans:
                self._outgoing.put_nowait(pb.DeviceMessage(span=self._spans.popleft().to_proto()))
            call = stub.Session(self._uplink(), metadata=metadata)
            opened = True
            logger.info("%s: registered with %s", self.config.name, self.config.server)
            beats = asyncio.ensure_future(self._heartbeats(reply.heartbeat_interval_s))
            stopper = asyncio.ensure_future(stop.wait())
            reader = asyncio.ensure_future(self._downlink(call))
            await asyncio.wait([reader, stopper], return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set() and not reader.done():
                # Say so, and let the server end the stream: it logs a departure, not a
                # device that vanished. A server that does not know the message: cut off.
                self._send(pb.DeviceMessage(close=pb.SessionClose(reason="stop requested")))
                await asyncio.wait([reader], timeout=CLOSE_WAIT_S)
            for task in (beats, stopper, reader):
                task.cancel()
            call.cancel()
            if reader.done() and not reader.cancelled() and reader.exception():
                raise reader.exception()
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                raise AgentFatal(f"server rejected this agent: {exc.details()}") from None
            logger.warning("%s: connection lost: %s %s", self.config.name,
                           exc.code().name, exc.details())
        finally:
            self._outgoing = None
            await channel.close()
            data_channel.close()
        return opened

    async def _uplink(self) -> AsyncIterator[pb.DeviceMessage]:
        queue = self._outgoing
        assert queue is not None
        while True:
            yield await queue.get()

    async def _downlink(self, call) -> None:
        async for message in call:
            body = message.WhichOneof("body")
            if body == "command":
                asyncio.ensure_future(self._run_command(Command.from_proto(message.command)))
            # heartbeat_ack needs no action: receiving it is the proof the server is there.

    async def _heartbeats(self, interval_s: float) -> None:
        seq = 0
        while True:
            self._send(pb.DeviceMessage(heartbeat=pb.Heartbeat(seq=seq, sent_unix_s=time.time())))
            seq += 1
            await asyncio.sleep(interval_s)

    def _send(self, message: pb.DeviceMessage) -> bool:
        if self._outgoing is None:
            return False
        self._outgoing.put_nowait(message)
        return True

    # ------------------------------------------------------------ commands
    async def _run_command(self, command: Command) -> None:
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._executor, self.handlers.run, self.context,
                                                command.kind, command.args)
            reply = CommandResult(command.command_id, True, result)
        except Exception as exc:  # report every handler failure to the server
            if isinstance(exc, ContractError):  # its message names the key and the command
                logger.warning("%s: %s", self.config.name, exc)
            else:
                logger.warning("%s: command %s failed:\n%s", self.config.name, command.kind,
                               traceback.format_exc())
            reply = CommandResult(command.command_id, False, error=str(exc),
                                  error_type=type(exc).__name__)
        if not self._send(pb.DeviceMessage(result=reply.to_proto())):
            logger.warning("%s: result of %s dropped: session is gone",
                           self.config.name, command.kind)

    def _emit_span(self, span: Span) -> None:
        """Span sink; called from handler threads."""
        loop = self._loop
        if loop is None or loop.is_closed():
            self._spans.append(span)
            return

        def enqueue() -> None:
            if not self._send(pb.DeviceMessage(span=span.to_proto())):
                self._spans.append(span)

        loop.call_soon_threadsafe(enqueue)
