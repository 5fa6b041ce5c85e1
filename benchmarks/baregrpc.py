"""Bare gRPC: 1 MiB byte messages through a client stream, nothing else.

The transport suite's middle reference between a raw TCP socket and
edgebed's Upload: same process layout (grpc.aio receiver in the benchmark
process, sender in its own process), same channel options, identity
(de)serializers, no framing, no checksums, no tensors. What it costs is what
Python gRPC itself costs per message and per byte.
"""
import argparse
import asyncio
import subprocess
import sys
import threading
import time
from typing import List

import grpc

from edgebed.proto.channel import CHANNEL_OPTIONS, SERVER_OPTIONS

METHOD = "/edgebed.bench.Bare/Stream"
CHUNK = 1 << 20


class BareReceiver:
    """A grpc.aio server on its own thread that counts the bytes it receives."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        self.address = f"127.0.0.1:{self.port}"

    async def _start(self) -> int:
        async def stream(requests, context):
            total = 0
            async for message in requests:
                total += len(message)
            return total.to_bytes(8, "little")

        handler = grpc.stream_unary_rpc_method_handler(
            stream, request_deserializer=bytes, response_serializer=bytes)
        self._server = grpc.aio.server(options=SERVER_OPTIONS)
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("edgebed.bench.Bare", {"Stream": handler}),))
        port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        return port

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._server.stop(0), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def send(address: str, nbytes: int, repeats: int) -> List[float]:
    with grpc.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        call = channel.stream_unary(METHOD, request_serializer=bytes, response_deserializer=bytes)
        payload = memoryview(bytearray(nbytes))
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            chunks = (payload[i:i + CHUNK].tobytes() for i in range(0, nbytes, CHUNK))
            reply = call(chunks)
            seconds.append(time.perf_counter() - start)
            if int.from_bytes(reply, "little") != nbytes:
                raise RuntimeError("bare gRPC receiver counted the wrong number of bytes")
    return seconds


def measure(receiver: BareReceiver, nbytes: int, repeats: int) -> List[float]:
    out = subprocess.run([sys.executable, "-m", "edgebed.benchmarks.baregrpc", receiver.address,
                          str(nbytes), "--repeats", str(repeats)],
                         check=True, capture_output=True, text=True)
    return [float(x) for x in out.stdout.split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address")
    parser.add_argument("nbytes", type=int)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    for s in send(args.address, args.nbytes, args.repeats):
        print(s)


if __name__ == "__main__":
    main()
