"""Handlers every agent has: liveness, a compute probe and raw tensor moves
(contract: ``edgebed.proto.contracts.runtime``)."""
import time

import torch

from edgebed.device.handlers import HandlerContext, HandlerRegistry, span_summary
from edgebed.proto.contracts import runtime as rt

registry = HandlerRegistry()


def tensor_checksum(tensor: torch.Tensor) -> float:
    """Order-independent fingerprint both ends compute to prove a transfer."""
    return float(tensor.double().sum().item())


@registry.command(rt.PING)
def ping(ctx: HandlerContext, req: rt.PingIns) -> rt.PingRes:
    return rt.PingRes(name=ctx.name, unix_s=time.time())


@registry.command(rt.COMPUTE)
def compute(ctx: HandlerContext, req: rt.ComputeIns) -> rt.ComputeRes:
    """``iterations`` float32 matmuls of size ``n``: a measured compute phase."""
    generator = torch.Generator().manual_seed(req.seed)
    a = torch.randn(req.n, req.n, generator=generator)
    b = torch.randn(req.n, req.n, generator=generator)
    with ctx.phase("compute", round=req.round, run_id=req.run_id) as span:
        for _ in range(req.iterations):
            a = torch.tanh(a @ b)
    summary = span_summary(span)
    return rt.ComputeRes(compute=summary,
                         gflops=2.0 * req.n ** 3 * req.iterations / summary.seconds / 1e9)


@registry.command(rt.UPLOAD)
def upload(ctx: HandlerContext, req: rt.UploadIns) -> rt.UploadRes:
    """Upload ``size_bytes`` of seeded float32 noise under ``key``."""
    generator = torch.Generator().manual_seed(req.seed)
    tensor = torch.randn(req.size_bytes // 4, generator=generator)
    with ctx.phase("upload", round=req.round, run_id=req.run_id, key=req.key,
                   rate_bps=req.uplink_bps) as span:
        stats = ctx.transfers.upload(req.key, {"x": tensor}, rate_bps=req.uplink_bps,
                                     quant=req.quant)
        span.bytes = stats.bytes
    # The transfer's own timing, not the phase's (which includes encoding).
    return rt.UploadRes(upload=span_summary(span), bytes=stats.bytes, seconds=stats.seconds,
                        rate_bps=stats.rate_bps, uplink_bps=req.uplink_bps,
                        checksum=tensor_checksum(tensor))


@registry.command(rt.DOWNLOAD)
def download(ctx: HandlerContext, req: rt.DownloadIns) -> rt.DownloadRes:
    """Download ``key`` at the server's rate and return checksums of its tensors."""
    with ctx.phase("download", round=req.round, run_id=req.run_id, key=req.key) as span:
        got = ctx.transfers.download(req.key, wait_s=req.wait_s)
        span.bytes = got.stats.bytes
    return rt.DownloadRes(download=span_summary(span), bytes=got.stats.bytes,
                          seconds=got.stats.seconds, rate_bps=got.stats.rate_bps,
                          checksums={name: tensor_checksum(t) for name, t in got.tensors.items()})
