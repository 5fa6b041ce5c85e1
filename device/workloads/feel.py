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


@registry.register("feel.setup")
def setup(ctx: HandlerContext, args: Dict[str, Any]) -> Dict[str, Any]:
    """Load this device's data and the server's initial weights."""
    seed = int(args.get("seed", 0))
    images, labels = load_dataset(args.get("dataset", "mnist5k"), args.get("data_root"),
                                  max_samples=args.get("max_samples"), seed=seed)
    images = standardize(images)  # as the server does (FederatedLearning)
    num_devices, index = int(args["num_devices"]), int(args["index"])
    # The server keeps a held-out test set; devices share the rest.
    pool, _ = split_holdout(labels, float(args.get("holdout", 0.2)), seed)
    if args.get("scheme", "iid") == "noniid":
        parts = partition_noniid(labels[pool], num_devices, shards_per_device=2, seed=seed)
    else:
        parts = partition_iid(pool.numel(), num_devices, seed)
    mine = pool[parts[index]]
    model = build_model(args.get("model", "cnn"), int(labels.max()) + 1,
                        tuple(images.shape[1:]))
    state = {"model": model, "x": images[mine], "y": labels[mine],
             "rng": torch.Generator().manual_seed(seed * 1000 + index), "round": -1}
    ctx.state[STATE] = state
    _load_weights(ctx, state, args["weights_key"], float(args.get("wait_s", 60)))
    return {"samples": int(mine.numel()), "parameters": int(flat_parameters(model).numel()),
            "hash": parameter_hash(model)}


@registry.register("feel.profile")
def profile(ctx: HandlerContext, args: Dict[str, Any]) -> Dict[str, Any]:
    """Gradient latency vs batch size on this device, and its eq. (9) fit."""
    state = _state(ctx)
    batches = [int(b) for b in args.get("batches", [1, 2, 4, 8, 16, 32])]
    shape = tuple(state["x"].shape[1:])
    with ctx.phase("profile_gradient", run_id=args.get("run_id", "")):
        latency = measure_gradient_latency(state["model"], shape, batches,
                                           repeats=int(args.get("repeats", 3)))
    fit = fit_cpu_linear(list(latency), list(latency.values()))
    model = state["model"]
    weights = flat_parameters(model)
    with ctx.phase("profile_update", run_id=args.get("run_id", "")) as upd:
        for _ in range(5):
            apply_global_gradient(model, weights, 0.01)  # the cost of eq. (2) here
    set_flat_parameters(model, weights)
    return {"latency_s": {str(b): s for b, s in latency.items()},
            "seconds_per_sample": fit.seconds_per_sample, "fixed_s": fit.fixed_s,
            "r2": fit.r2, "update_s": upd.span.duration_s / 5}


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


@registry.register("feel.round")
def run_round(ctx: HandlerContext, args: Dict[str, Any]) -> Dict[str, Any]:
    """One communication round: the five steps of section II-A."""
    state = _state(ctx)
    model = state["model"]
    run_id, rnd = args.get("run_id", ""), int(args["round"])
    result: Dict[str, Any] = {"round": rnd}
    if args.get("expected_hash") and parameter_hash(model) != args["expected_hash"]:
        # Missed a round (deadline, disconnect): rejoin from the server's weights.
        with ctx.phase("rejoin", round=rnd, run_id=run_id) as rejoin:
            _load_weights(ctx, state, args["weights_key"], 0.0)
        result["rejoined"] = span_summary(rejoin)
    batch = int(args["batch"])
    with ctx.phase("compute", round=rnd, run_id=run_id, batch=batch) as comp, \
            _frozen_counters(model):
        if args.get("mode", "gradient") == "model":
            grad, loss = _local_epochs(state, batch, float(args.get("local_lr", 0.05)),
                                       int(args.get("local_epochs", 1)))
        else:
            n = state["x"].shape[0]
            idx = torch.randint(0, n, (batch,), generator=state["rng"]) if batch < n else \
                torch.randperm(n, generator=state["rng"])
            grad, loss = compute_gradient(model, state["x"][idx], state["y"][idx])
    rate = ctx.uplink_bps(args)
    meta = {"round": str(rnd), "batch": str(batch)}
    payload = {"grad": grad}
    quant = quant_for_bits(int(args.get("bits", 32)))
    if has_batchnorm(model):
        payload["buffers"] = flat_buffers(model)  # averaged by the server, sent raw
    with ctx.phase("upload", round=rnd, run_id=run_id, rate_bps=rate) as up:
        stats = ctx.transfers.upload(args["grad_key"], payload, rate_bps=rate,
                                     quant={"grad": quant} if quant else None, meta=meta)
        up.bytes = stats.bytes
    # Wait while the server aggregates (every gradient must be in), then download.
    got, wait, down = ctx.download_after_wait(args["global_key"], "wait",
                                              float(args.get("wait_s", 600)),
                                              round=rnd, run_id=run_id)
    with ctx.phase("update", round=rnd, run_id=run_id) as upd:
        lr = float(got.meta["lr"])
        apply_global_gradient(model, got.tensors["grad"], lr)  # eq. (2)
        if "buffers" in got.tensors:
            set_flat_buffers(model, got.tensors["buffers"])
    state["round"] = rnd
    result.update({"loss": float(loss), "batch": batch, "compute": span_summary(comp),
                   "upload": span_summary(up), "wait": span_summary(wait), "download": span_summary(down),
                   "update": span_summary(upd), "upload_bytes": stats.bytes,
                   "hash": parameter_hash(model)})
    return result
