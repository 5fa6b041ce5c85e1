"""A plain TCP socket moving the same bytes as a gRPC Upload: the baseline the
transport suite measures gRPC goodput against.

The receiver runs in the benchmark process (a thread, like the edge server);
the sender is a separate process (``python -m edgebed.benchmarks.rawtcp``),
like an agent. The sender times from connect until the receiver acknowledges
the last byte, which is what the agent's Upload timing covers too.
"""
import argparse
import socket
import subprocess
import sys
import threading
import time
from typing import List

import torch

ACK = b"k"


class RawReceiver:
    """Accepts one connection at a time and reads ``nbytes`` into a buffer."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self._sock.listen(1)
        self.address = self._sock.getsockname()

    def receive(self, nbytes: int, count: int) -> threading.Thread:
        """Accept ``count`` transfers of ``nbytes``, each into a fresh buffer
        (as the server's assembler does)."""
        def work() -> None:
            for _ in range(count):
                conn, _ = self._sock.accept()
                with conn:
                    buffer = bytearray(nbytes)
                    view = memoryview(buffer)
                    got = 0
                    while got < nbytes:
                        n = conn.recv_into(view[got:], min(nbytes - got, 1 << 22))
                        if n == 0:
                            raise ConnectionError(f"sender closed after {got} of {nbytes} bytes")
                        got += n
                    conn.sendall(ACK)

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self._sock.close()


def send(host: str, port: int, nbytes: int, seed: int = 0) -> float:
    """Send ``nbytes`` of a float32 tensor's memory; return seconds."""
    tensor = torch.randn(nbytes // 4, generator=torch.Generator().manual_seed(seed))
    payload = memoryview(tensor.numpy()).cast("B")
    start = time.perf_counter()
    with socket.create_connection((host, port)) as conn:
        conn.sendall(payload)
        if conn.recv(1) != ACK:
            raise ConnectionError("receiver did not acknowledge")
    return time.perf_counter() - start


def measure(receiver: RawReceiver, nbytes: int, repeats: int, seed: int = 0) -> List[float]:
    """Run one sender process for ``repeats`` transfers; the seconds of each."""
    host, port = receiver.address
    thread = receiver.receive(nbytes, repeats)
    out = subprocess.run([sys.executable, "-m", "edgebed.benchmarks.rawtcp", host, str(port),
                          str(nbytes), "--repeats", str(repeats), "--seed", str(seed)],
                         check=True, capture_output=True, text=True)
    thread.join()
    return [float(x) for x in out.stdout.split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("nbytes", type=int)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for r in range(args.repeats):
        print(send(args.host, args.port, args.nbytes // 4 * 4, args.seed + r))


if __name__ == "__main__":
    main()
