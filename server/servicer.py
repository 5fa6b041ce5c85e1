"""The gRPC layer: business-only servicer methods, and one interceptor for
what every RPC shares.

- ``EdgeServicer``: one method per RPC, each handing off to ``rpc_handlers``
  (the gRPC route_guide example's shape). No try/except, no auth here.
  Requests arrive as raw bytes and are parsed here, so a malformed message
  is the client's INVALID_ARGUMENT, never gRPC's UNKNOWN or INTERNAL.
- ``GuardInterceptor``: on every method of each guarded service (the
  device-facing one, and Control when a standing server adds it), the
  service's check of the caller (``server/identity.py``: a certificate, an
  enrolled credential, a token) first, its identity then known to the method
  as ``identity.CALLER``; and whatever the method raises mapped to a status
  through ``STATUS_TABLE``, the one place where exceptions become status
  codes. The gRPC health service is not guarded: it stays public.

``create_grpc_server`` builds the grpc.aio server with the documented
message-size and keepalive settings of ``edgebed.proto.channel``.
"""
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable, Optional, Sequence, Tuple, Type

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from edgebed.proto import edge_pb2 as pb
from edgebed.proto.channel import SERVER_OPTIONS
from edgebed.proto.contracts.base import ContractError
from edgebed.proto.errors import CodecError, TransferTooLarge
from edgebed.proto.wire import SERVICE as SERVICE_NAME
from edgebed.proto.wire import parse_frame, serialize_frame
from edgebed.server import rpc_handlers
from edgebed.server.errors import (
    DeviceDisconnected,
    DuplicateUpload,
    NameTaken,
    NotOffered,
    PermissionDenied,
    RequestError,
    ServerError,
    SessionClosed,
    StreamTimeout,
    TooManyTransfers,
    Unauthenticated,
    UnknownDevice,
    UnknownRun,
)
from edgebed.server.identity import CALLER, Identity, device_check
from edgebed.server.state import ServerState

logger = logging.getLogger(__name__)

#: Exception type -> status code, most specific first; the first match wins.
#: A bare ValueError (or any other exception) is a server bug, not the
#: client's fault: it becomes INTERNAL and its traceback is logged.
STATUS_TABLE: Sequence[Tuple[Type[BaseException], grpc.StatusCode]] = (
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (TransferTooLarge, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (TooManyTransfers, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (StreamTimeout, grpc.StatusCode.DEADLINE_EXCEEDED),
    (NameTaken, grpc.StatusCode.ALREADY_EXISTS),
    (DuplicateUpload, grpc.StatusCode.ALREADY_EXISTS),
    (SessionClosed, grpc.StatusCode.ABORTED),
    (CodecError, grpc.StatusCode.INVALID_ARGUMENT),
    (ContractError, grpc.StatusCode.INVALID_ARGUMENT),   # a transfer's meta off its contract
    (RequestError, grpc.StatusCode.INVALID_ARGUMENT),
    (UnknownDevice, grpc.StatusCode.NOT_FOUND),
    (UnknownRun, grpc.StatusCode.NOT_FOUND),
    (NotOffered, grpc.StatusCode.NOT_FOUND),
    (DeviceDisconnected, grpc.StatusCode.UNAVAILABLE),
    (ServerError, grpc.StatusCode.FAILED_PRECONDITION),
)

def status_for(exc: BaseException) -> Tuple[grpc.StatusCode, str]:
    """Map an exception raised while serving an RPC to (code, message).

    Client errors are logged in one line at debug level (a flood of bad input
    must not flood the log with tracebacks); a server bug with its traceback."""
    for kind, code in STATUS_TABLE:
        if isinstance(exc, kind):
            logger.debug("refused with %s: %s", code.name, exc)
            return code, str(exc)
    logger.error("unexpected error while serving an RPC", exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}"


def parse(message_type, raw: bytes):
    """A request message from the client's bytes; CodecError when they are not one."""
    try:
        return message_type.FromString(raw)
    except Exception as exc:  # DecodeError, or anything a hostile buffer provokes
        raise CodecError(f"not a {message_type.DESCRIPTOR.name}: {type(exc).__name__}") from None


def parsed_frames(raw_frames):
    """The frames of a transfer stream, parsed one by one as they arrive."""

    async def frames():
        async for raw in raw_frames:
            try:
                yield parse_frame(raw)
            except Exception as exc:
                raise CodecError(f"not a TransferFrame: {exc}") from None

    return frames()


# ---------------------------------------------------------------- interceptors

Check = Callable[[grpc.aio.ServicerContext], Awaitable[Identity]]


def _wrap(handler: grpc.RpcMethodHandler, check: Check) -> grpc.RpcMethodHandler:
    """``handler`` with ``check(context)`` run first and exceptions mapped to
    statuses; the same request/response (de)serializers, the same RPC kind."""

    async def fail(context, exc: BaseException) -> None:
        code, message = status_for(exc)
        await context.abort(code, message)

    if handler.unary_unary or handler.stream_unary:
        behavior = handler.unary_unary or handler.stream_unary

        async def unary_response(request, context):
            try:
                CALLER.set(await check(context))
                return await behavior(request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await fail(context, exc)

        make = (grpc.unary_unary_rpc_method_handler if handler.unary_unary
                else grpc.stream_unary_rpc_method_handler)
        new = unary_response
    else:
        behavior = handler.unary_stream or handler.stream_stream

        async def stream_response(request, context):
            try:
                CALLER.set(await check(context))
                async for item in behavior(request, context):
                    yield item
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await fail(context, exc)

        make = (grpc.unary_stream_rpc_method_handler if handler.unary_stream
                else grpc.stream_stream_rpc_method_handler)
        new = stream_response
    return make(new, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)


@dataclass(frozen=True)
class Service:
    """One gRPC service of the server: its handlers and who may call it."""

    name: str                           # the full service name, e.g. edgebed.v1.Control
    handler: grpc.GenericRpcHandler
    check: Check                        # raises Unauthenticated for a caller it refuses


class GuardInterceptor(grpc.aio.ServerInterceptor):
    """Every method of every listed service: its check first, then the method,
    with exceptions turned into statuses through ``STATUS_TABLE``. Services
    not listed (the health service) pass through untouched."""

    def __init__(self, services: Sequence[Service]) -> None:
        self._checks = {f"/{s.name}/": s.check for s in services}

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        prefix = details.method[:details.method.rfind("/") + 1]
        check = self._checks.get(prefix)
        if handler is None or check is None:
            return handler
        return _wrap(handler, check)


# ---------------------------------------------------------------- servicer

class EdgeServicer:
    """The device-facing service: one method per RPC, business only."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    async def Register(self, request, context):
        return rpc_handlers.register(self.state, parse(pb.RegisterRequest, request))

    async def Session(self, request_iterator, context):
        messages = (parse(pb.DeviceMessage, raw) async for raw in request_iterator)
        async for message in rpc_handlers.session(self.state, messages):
            yield message

    async def Upload(self, request_iterator, context):
        return await rpc_handlers.upload(self.state, parsed_frames(request_iterator))

    async def Download(self, request, context):
        async for frame in rpc_handlers.download(self.state, parse(pb.DownloadRequest, request)):
            yield frame

    async def Infer(self, request_iterator, context):
        async for frame in rpc_handlers.infer(self.state, parsed_frames(request_iterator)):
            yield frame


def _method_handlers(servicer: EdgeServicer) -> grpc.GenericRpcHandler:
    """The generated registration, but requests stay raw bytes until the
    methods parse them (``parse``, ``parsed_frames``: wire.py's zero-copy
    frame parser), and replies use wire.py's zero-copy frame serializer; the
    bytes on the wire are the same."""
    return grpc.method_handlers_generic_handler(SERVICE_NAME, {
        "Register": grpc.unary_unary_rpc_method_handler(
            servicer.Register, response_serializer=pb.RegisterReply.SerializeToString),
        "Session": grpc.stream_stream_rpc_method_handler(
            servicer.Session, response_serializer=pb.ServerMessage.SerializeToString),
        "Upload": grpc.stream_unary_rpc_method_handler(
            servicer.Upload, response_serializer=pb.TransferStats.SerializeToString),
        "Download": grpc.unary_stream_rpc_method_handler(
            servicer.Download, response_serializer=serialize_frame),
        "Infer": grpc.stream_stream_rpc_method_handler(
            servicer.Infer, response_serializer=serialize_frame),
    })


def _credentials(state: ServerState) -> Optional[grpc.ServerCredentials]:
    config = state.config
    if not config.tls_cert:
        return None
    with open(config.tls_key, "rb") as key_file, open(config.tls_cert, "rb") as cert_file:
        pair = (key_file.read(), cert_file.read())
    if not config.client_ca:
        return grpc.ssl_server_credentials([pair])
    with open(config.client_ca, "rb") as ca_file:  # mutual TLS: every client shows a certificate
        return grpc.ssl_server_credentials([pair], root_certificates=ca_file.read(),
                                           require_client_auth=True)


async def create_grpc_server(state: ServerState, extra: Sequence[Service] = ()
                             ) -> Tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """Build the aio server for ``state`` (the device-facing service, plus
    ``extra`` services such as Control) and bind ``state.config.listen``.

    Returns ``(server, port, health_servicer)``; bind port 0 to get a free
    port (tests do). Message limits and keepalive: see proto/channel.py.
    """
    services = [Service(SERVICE_NAME, _method_handlers(EdgeServicer(state)),
                        device_check(state.config, state.credentials)), *extra]
    server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=[GuardInterceptor(services)])
    server.add_generic_rpc_handlers(tuple(s.handler for s in services))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    credentials = _credentials(state)
    if credentials is None:
        port = server.add_insecure_port(state.config.listen)
    else:
        port = server.add_secure_port(state.config.listen, credentials)
    if port == 0:
        raise ServerError(f"cannot listen on {state.config.listen}")
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, port, health_servicer
