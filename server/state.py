"""What the server knows, apart from gRPC: devices, transfers, handlers, sinks.

``ServerState`` is what the RPC functions (``rpc_handlers``) read and write;
it never imports grpc or the servicer, so the state, the RPC logic and the
gRPC layer depend on each other in one direction only:
``servicer -> rpc_handlers -> state``. ``EdgeServer`` (``core``) adds the
lifecycle and the orchestrator API on top.

Every kind of plug-in has an add and a remove: Infer handlers (split
inference's executor), upload validators (a workload's checks on what its
devices send) and span sinks (results writers, a run's event log).
"""
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable, Dict, List, Mapping, Optional, Union

import torch

from edgebed.proto.records import LinkProfile, Span
from edgebed.server.config import ServerConfig
from edgebed.server.errors import RequestError
from edgebed.server.identity import CredentialStore
from edgebed.server.links import LinkBook
from edgebed.server.registry import DeviceRegistry
from edgebed.server.transfers import Inbox, Outbox, ReceivedTransfer

logger = logging.getLogger(__name__)


@dataclass
class InferReply:
    """An Infer handler's answer: the tensors to send back and, optionally,
    who to tell how long the paced reply took to send (the sender's side:
    encoding until the pacer released the last frame)."""

    tensors: Mapping[str, torch.Tensor]
    on_sent: Optional[Callable[[float], None]] = None


# A plain function (run in a worker thread) or a coroutine function (awaited on
# the server's loop: it must not block it, and is cancelled when the stream
# breaks). It returns the reply tensors, or an InferReply to learn the reply's timing.
InferResult = Union[Mapping[str, torch.Tensor], InferReply]
InferHandler = Callable[[ReceivedTransfer], Union[InferResult, Awaitable[InferResult]]]
UploadValidator = Callable[[ReceivedTransfer], None]
SpanSink = Callable[[Span], None]


class ServerState:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.registry = DeviceRegistry()
        # Enrolled credentials and revoked certificates live in the state directory.
        self.credentials = CredentialStore(Path(config.state_dir)) if config.state_dir else None
        self.links = LinkBook(config.link_ttl_s)
        self.inbox = Inbox()
        self.outbox = Outbox()
        self._infer_handlers: Dict[str, InferHandler] = {}
        self._validators: Dict[str, UploadValidator] = {}
        self._span_sinks: List[SpanSink] = []
        # Transfer streams open right now (Upload, Download, Infer), per device.
        self.transfers_by_device: Dict[str, int] = {}

    @property
    def transfers_in_flight(self) -> int:
        """Transfer streams open right now (Upload, Download and Infer), in all:
        derived from the per-device counts, so the two never disagree."""
        return sum(self.transfers_by_device.values())

    # ------------------------------------------------------------ links
    def link(self, device: str) -> LinkProfile:
        return self.registry.get(device).link

    # ------------------------------------------------------------ infer handlers
    def add_infer_handler(self, name: str, handler: InferHandler) -> None:
        """Serve Infer requests whose meta names ``handler``."""
        if name in self._infer_handlers:
            raise ValueError(f"an Infer handler {name!r} is already installed")
        self._infer_handlers[name] = handler

    def remove_infer_handler(self, name: str, handler: Optional[InferHandler] = None) -> None:
        """Uninstall ``name`` (only if it is still ``handler``, when given)."""
        if handler is None or self._infer_handlers.get(name) == handler:
            self._infer_handlers.pop(name, None)

    def infer_handler(self, name: str) -> InferHandler:
        handler = self._infer_handlers.get(name)
        if handler is None:
            known = ", ".join(sorted(self._infer_handlers)) or "none"
            raise RequestError(f"no inference handler {name!r} (installed: {known})")
        return handler

    # ------------------------------------------------------------ upload validators
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

    # ------------------------------------------------------------ telemetry
    def add_span_sink(self, sink: SpanSink) -> None:
        self._span_sinks.append(sink)

    def remove_span_sink(self, sink: SpanSink) -> None:
        if sink in self._span_sinks:
            self._span_sinks.remove(sink)

    def record_span(self, span: Span) -> None:
        for sink in list(self._span_sinks):
            try:
                sink(span)
            except Exception:  # a broken sink must not break the session
                logger.exception("span sink failed")
