"""Handlers every agent has: liveness, a compute probe and raw tensor moves.

Workloads (latent upload, federated rounds, split inference) register their
own handlers next to these; see ``device.workloads.default_handlers``.
"""
import time
from typing import Any, Dict

import torch

from edgebed.device.handlers import HandlerContext, HandlerRegistry, span_summary
from edgebed.proto.quantize import QuantSpec

registry = HandlerRegistry()


def tensor_checksum(tensor: torch.Tensor) -> float:
    """Order-independent fingerprint both ends compute to prove a transfer."""
    return float(tensor.double().sum().item())


@registry.register("ping")
def ping(ctx: HandlerContext, args: Dict[str, Any]) -> Dict[str, Any]:
    return {"name": ctx.name, "unix_s": time.time()}


@registry.register("compute")
def compute(ctx: HandlerContext, args: Dict[str, Any]) -> Dict[str, Any]:
    """Run ``iterations`` float32 matmuls of size ``n``: a measured compute phase."""
    n = int(args.get("n", 256))
    iterations = int(args.get("iterations", 20))
    if n <= 0 or iterations <= 0:
        raise ValueError(f"compute needs positive n and iterations, got {n} and {iterations}")
    generator = torch.Generator().manual_seed(int(args.get("seed", 0)))
    a = torch.randn(n, n, generator=generator)
    b = torch.randn(n, n, generator=generator)
    with ctx.phase("compute", round=int(args.get("round", 0)), run_id=args.get("run_id", "")) as span:
        for _ in range(iterations):
            a = torch.tanh(a @ b)
    result = span_summary(span)
    result["gflops"] = 2.0 * n ** 3 * iterations / result["seconds"] / 1e9
    return result


@registry.register("upload_synthetic")
def upload_synthetic(ctx: HandlerContext, args: Dict[str, Any]) -> Dict[str, Any]:
    """Upload ``size_bytes`` of seeded float32 noise under ``key``."""
    size_bytes = int(args["size_bytes"])
    if size_bytes < 4:
        raise ValueError(f"size_bytes must be at least 4, got {size_bytes}")
    generator = torch.Generator().manual_seed(int(args.get("seed", 0)))
    tensor = torch.randn(size_bytes // 4, generator=generator)
    quant = QuantSpec(**args["quant"]) if args.get("quant") else None
    rate = ctx.uplink_bps(args)
    with ctx.phase("upload", round=int(args.get("round", 0)), run_id=args.get("run_id", ""),
                   key=args["key"], rate_bps=rate) as span:
        stats = ctx.transfers.upload(args["key"], {"x": tensor}, rate_bps=rate, quant=quant)
        span.bytes = stats.bytes
    # The transfer's own timing, not the phase's (which includes encoding).
    return {**span_summary(span), "bytes": stats.bytes, "seconds": stats.seconds,
            "rate_bps": stats.rate_bps, "set_rate_bps": rate,
            "checksum": tensor_checksum(tensor)}


@registry.register("download")
def download(ctx: HandlerContext, args: Dict[str, Any]) -> Dict[str, Any]:
    """Download ``key`` at the server's rate and return checksums of its tensors."""
    with ctx.phase("download", round=int(args.get("round", 0)), run_id=args.get("run_id", ""),
                   key=args["key"]) as span:
        got = ctx.transfers.download(args["key"])
        span.bytes = got.stats.bytes
    return {**span_summary(span), "bytes": got.stats.bytes, "seconds": got.stats.seconds,
            "rate_bps": got.stats.rate_bps,
            "checksums": {name: tensor_checksum(t) for name, t in got.tensors.items()}}
