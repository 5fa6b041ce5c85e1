"""Device side of gradient-based federated edge learning (paper 003, II-A).

One communication round (``feel.round``) is the paper's five steps on this
device: compute the local gradient over B_k samples (step 1), quantize it to
b bits and upload it at the rate of its uplink time slot (step 2), wait for
the server's aggregate (step 3), download the global gradient at the rate of
its downlink slot (step 4) and apply eq. (2) (step 5). Every step is a
measured span. The update uses the same float operations on the same bytes
on every device, so all devices hold bit-identical weights after each round
(``parameter_hash`` proves it).
"""
import contextlib
from typing import Any, Dict

import torch

from edgebed.device.handlers import HandlerContext, HandlerRegistry, span_summary
from edgebed.models.datasets import load_dataset, standardize
from edgebed.models.feel.nets import (
    apply_global_gradient,
    build_model,
    compute_gradient,
    flat_buffers,
    flat_parameters,
    has_batchnorm,
    parameter_hash,
    set_flat_buffers,
    set_flat_parameters,
)
from edgebed.models.feel.latency import fit_cpu_linear, measure_gradient_latency
from edgebed.models.partition import partition_iid, partition_noniid, split_holdout
from edgebed.proto.contracts import feel
from edgebed.proto.quantize import quant_for_bits

registry = HandlerRegistry()

STATE = "feel"


def _state(ctx: HandlerContext) -> Dict[str, Any]:
    if STATE not in ctx.state:
        raise ValueError("feel.setup must run before this command")
    return ctx.state[STATE]


def _load_weights(ctx: HandlerContext, state: Dict[str, Any], key: str, wait_s: float) -> None:
    got = ctx.transfers.download(key, wait_s=wait_s)
    set_flat_parameters(state["model"], got.tensors["weights"])
    if "buffers" in got.tensors:  # a BatchNorm model's running statistics
        set_flat_buffers(state["model"], got.tensors["buffers"])


@registry.command(feel.SETUP)
def setup(ctx: HandlerContext, req: feel.SetupIns) -> feel.SetupRes:
    """Load this device's data and the server's initial weights."""
    images, labels = load_dataset(req.dataset, req.data_root, max_samples=req.max_samples,
                                  seed=req.seed)
    images = standardize(images)  # as the server does (FederatedLearning)
    # The server keeps a held-out test set; devices share the rest.
    pool, _ = split_holdout(labels, req.holdout, req.seed)
    if req.partition == "noniid":
        parts = partition_noniid(labels[pool], req.num_devices, shards_per_device=2, seed=req.seed)
    else:
        parts = partition_iid(pool.numel(), req.num_devices, req.seed)
    mine = pool[parts[req.index]]
    model = build_model(req.model, int(labels.max()) + 1, tuple(images.shape[1:]))
    state = {"model": model, "x": images[mine], "y": labels[mine],
             "rng": torch.Generator().manual_seed(req.seed * 1000 + req.index), "round": -1}
    ctx.state[STATE] = state
    _load_weights(ctx, state, req.weights_key, req.wait_s)
    return feel.SetupRes(samples=int(mine.numel()),
                         parameters=int(flat_parameters(model).numel()),
                         hash=parameter_hash(model))


@registry.command(feel.PROFILE)
def profile(ctx: HandlerContext, req: feel.ProfileIns) -> feel.ProfileRes:
    """Gradient latency vs batch size on this device, and its eq. (9) fit."""
    state = _state(ctx)
    shape = tuple(state["x"].shape[1:])
    with ctx.phase("profile_gradient", run_id=req.run_id):
        latency = measure_gradient_latency(state["model"], shape, req.batches,
                                           repeats=req.repeats)
    fit = fit_cpu_linear(list(latency), list(latency.values()))
    model = state["model"]
    weights = flat_parameters(model)
    with ctx.phase("profile_update", run_id=req.run_id) as upd:
        for _ in range(5):
            apply_global_gradient(model, weights, 0.01)  # the cost of eq. (2) here
    set_flat_parameters(model, weights)
    return feel.ProfileRes(latency_s={str(b): s for b, s in latency.items()},
                           seconds_per_sample=fit.seconds_per_sample, fixed_s=fit.fixed_s,
                           r2=fit.r2, update_s=upd.span.duration_s / 5)


@contextlib.contextmanager
def _frozen_counters(model):
    """Keep integer buffers (BatchNorm's num_batches_tracked) as they were:
    local steps differ per device, and these counters are not averaged, so
    they must not move if every copy is to stay bit-identical."""
    saved = [(b, b.clone()) for b in model.buffers() if not b.is_floating_point()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


def _local_epochs(state: Dict[str, Any], batch: int, lr: float, epochs: int):
    """Model-based FEEL (FedAvg) and individual learning: local SGD epochs;
    returns the model delta (uploaded in place of a gradient) and the mean
    loss. The weights are restored: the server's averaged delta is applied
    to everyone alike."""
    model = state["model"]
    start = flat_parameters(model)
    losses = []
    for _ in range(epochs):
        order = torch.randperm(state["x"].shape[0], generator=state["rng"])
        for i in range(0, order.numel(), batch):
            idx = order[i:i + batch]
            grad, loss = compute_gradient(model, state["x"][idx], state["y"][idx])
            apply_global_gradient(model, grad, lr)
            losses.append(float(loss))
    delta = flat_parameters(model) - start
    set_flat_parameters(model, start)
    return delta, sum(losses) / len(losses)


@registry.command(feel.ROUND)
def run_round(ctx: HandlerContext, req: feel.RoundIns) -> feel.RoundRes:
    """One communication round: the five steps of section II-A."""
    state = _state(ctx)
    model = state["model"]
    run_id, rnd = req.run_id, req.round
    rejoined = None
    if parameter_hash(model) != req.expected_hash:
        # Missed a round (deadline, disconnect): rejoin from the server's weights.
        with ctx.phase("rejoin", round=rnd, run_id=run_id) as rejoin:
            _load_weights(ctx, state, req.weights_key, 0.0)
            loaded = parameter_hash(model)  # copies every tensor: once
            if loaded != req.expected_hash:  # never compute on a different model
                raise ValueError(f"rejoined from {req.weights_key} but the weights' hash "
                                 f"{loaded[:12]} is not the server's "
                                 f"{req.expected_hash[:12]}")
        rejoined = span_summary(rejoin)
    with ctx.phase("compute", round=rnd, run_id=run_id, batch=req.batch) as comp, \
            _frozen_counters(model):
        if req.mode == "model":
            grad, loss = _local_epochs(state, req.batch, req.local_lr, req.local_epochs)
        else:
            n = state["x"].shape[0]
            idx = torch.randint(0, n, (req.batch,), generator=state["rng"]) if req.batch < n \
                else torch.randperm(n, generator=state["rng"])
            grad, loss = compute_gradient(model, state["x"][idx], state["y"][idx])
    payload = {"grad": grad}
    quant = quant_for_bits(req.bits)
    if has_batchnorm(model):
        payload["buffers"] = flat_buffers(model)  # averaged by the server, sent raw
    with ctx.phase("upload", round=rnd, run_id=run_id, rate_bps=req.uplink_bps) as up:
        stats = ctx.transfers.upload(req.grad_key, payload, rate_bps=req.uplink_bps,
                                     quant={"grad": quant} if quant else None,
                                     meta=feel.GradMeta(round=rnd, batch=req.batch).to_meta())
        up.bytes = stats.bytes
    # Wait while the server aggregates (every gradient must be in), then download.
    got, wait, down = ctx.download_after_wait(req.global_key, "wait", req.wait_s,
                                              round=rnd, run_id=run_id)
    with ctx.phase("update", round=rnd, run_id=run_id) as upd:
        lr = feel.AggregateMeta.from_meta(got.meta).lr
        apply_global_gradient(model, got.tensors["grad"], lr)  # eq. (2)
        if "buffers" in got.tensors:
            set_flat_buffers(model, got.tensors["buffers"])
    state["round"] = rnd
    return feel.RoundRes(round=rnd, loss=float(loss), batch=req.batch,
                         compute=span_summary(comp), upload=span_summary(up),
                         wait=span_summary(wait), download=span_summary(down),
                         update=span_summary(upd), upload_bytes=stats.bytes,
                         hash=parameter_hash(model), rejoined=rejoined)
