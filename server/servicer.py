"""Thin gRPC servicer: authenticate, hand off to ``rpc_handlers``, map errors.

``status_for`` is the one place where exceptions become status codes.
``create_grpc_server`` builds the grpc.aio server with the documented
message-size and keepalive settings from ``edgebed.proto.channel``.
"""
import logging
import secrets
from typing import Optional, Tuple

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from edgebed.proto import edge_pb2 as pb
from edgebed.proto import edge_pb2_grpc
from edgebed.proto.channel import SERVER_OPTIONS, token_from_metadata
from edgebed.proto.errors import CodecError, TransferTooLarge
from edgebed.proto.wire import SERVICE as SERVICE_NAME
from edgebed.proto.wire import parse_frame, serialize_frame
from edgebed.server import rpc_handlers
from edgebed.server.core import EdgeServer
from edgebed.server.errors import (
    DeviceDisconnected,
    NotOffered,
    ServerError,
    Unauthenticated,
    UnknownDevice,
)

logger = logging.getLogger(__name__)



def status_for(exc: BaseException) -> Tuple[grpc.StatusCode, str]:
    """Map an exception raised while serving an RPC to (code, message)."""
    if isinstance(exc, Unauthenticated):
        return grpc.StatusCode.UNAUTHENTICATED, str(exc)
    if isinstance(exc, TransferTooLarge):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)
    if isinstance(exc, (CodecError, ValueError)):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, (UnknownDevice, NotOffered)):
        return grpc.StatusCode.NOT_FOUND, str(exc)
    if isinstance(exc, DeviceDisconnected):
        return grpc.StatusCode.UNAVAILABLE, str(exc)
    if isinstance(exc, ServerError):
        return grpc.StatusCode.FAILED_PRECONDITION, str(exc)
    logger.error("unexpected error while serving an RPC", exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}"


class EdgeServicer(edge_pb2_grpc.EdgeServiceServicer):
    def __init__(self, core: EdgeServer) -> None:
        self.core = core

    def _authorize(self, context: grpc.aio.ServicerContext) -> None:
        expected = self.core.config.token
        if not expected:
            return
        given = token_from_metadata(context.invocation_metadata() or ())
        if given is None:
            raise Unauthenticated("missing token: this server requires --token")
        if not secrets.compare_digest(given, expected):
            raise Unauthenticated("wrong token")

    async def _fail(self, context: grpc.aio.ServicerContext, exc: BaseException) -> None:
        code, message = status_for(exc)
        await context.abort(code, message)

    async def Register(self, request, context):
        try:
            self._authorize(context)
            return rpc_handlers.register(self.core, request)
        except Exception as exc:
            await self._fail(context, exc)

    async def Session(self, request_iterator, context):
        try:
            self._authorize(context)
            async for message in rpc_handlers.session(self.core, request_iterator):
                yield message
        except Exception as exc:
            await self._fail(context, exc)

    async def Upload(self, request_iterator, context):
        try:
            self._authorize(context)
            return await rpc_handlers.upload(self.core, request_iterator)
        except Exception as exc:
            await self._fail(context, exc)

    async def Download(self, request, context):
        try:
            self._authorize(context)
            async for frame in rpc_handlers.download(self.core, request):
                yield frame
        except Exception as exc:
            await self._fail(context, exc)

    async def Infer(self, request_iterator, context):
        try:
            self._authorize(context)
            async for frame in rpc_handlers.infer(self.core, request_iterator):
                yield frame
        except Exception as exc:
            await self._fail(context, exc)


def _method_handlers(servicer: EdgeServicer) -> grpc.GenericRpcHandler:
    """The generated registration, but the data-plane RPCs use wire.py's
    zero-copy frame (de)serializers; the bytes on the wire are the same."""
    return grpc.method_handlers_generic_handler(SERVICE_NAME, {
        "Register": grpc.unary_unary_rpc_method_handler(
            servicer.Register, request_deserializer=pb.RegisterRequest.FromString,
            response_serializer=pb.RegisterReply.SerializeToString),
        "Session": grpc.stream_stream_rpc_method_handler(
            servicer.Session, request_deserializer=pb.DeviceMessage.FromString,
            response_serializer=pb.ServerMessage.SerializeToString),
        "Upload": grpc.stream_unary_rpc_method_handler(
            servicer.Upload, request_deserializer=parse_frame,
            response_serializer=pb.TransferStats.SerializeToString),
        "Download": grpc.unary_stream_rpc_method_handler(
            servicer.Download, request_deserializer=pb.DownloadRequest.FromString,
            response_serializer=serialize_frame),
        "Infer": grpc.stream_stream_rpc_method_handler(
            servicer.Infer, request_deserializer=parse_frame,
            response_serializer=serialize_frame),
    })


def _credentials(core: EdgeServer) -> Optional[grpc.ServerCredentials]:
    config = core.config
    if not config.tls_cert:
        return None
    with open(config.tls_key, "rb") as key_file, open(config.tls_cert, "rb") as cert_file:
        return grpc.ssl_server_credentials([(key_file.read(), cert_file.read())])


async def create_grpc_server(core: EdgeServer) -> Tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """Build the aio server for ``core`` and bind ``core.config.listen``.

    Returns ``(server, port, health_servicer)``; bind port 0 to get a free
    port (tests do). Message limits and keepalive: see proto/channel.py.
    """
    server = grpc.aio.server(options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers((_method_handlers(EdgeServicer(core)),))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    credentials = _credentials(core)
    if credentials is None:
        port = server.add_insecure_port(core.config.listen)
    else:
        port = server.add_secure_port(core.config.listen, credentials)
    if port == 0:
        raise ServerError(f"cannot listen on {core.config.listen}")
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, port, health_servicer
