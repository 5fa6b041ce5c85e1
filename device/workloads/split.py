"""Device side of split DNN inference (paper 004).

``split.profile`` builds the split model and measures what the server's
solver needs from this device: the local delay T^lo_{n,m} of every layer
(eq. 12's and eq. 24's local term), the bytes O_{n,m} uploaded at each split
point (eq. 8) and the computing power P^lo_n from this device's meter. It
reports, when asked (``isolated``), the isolated per-layer medians of
``models.layer_profile`` (``t_local_isolated_s``), the delay model's recipe.

``split.run`` executes a decided strategy: for each of ``n`` real inputs
(MNIST-5k digits for LeNet) it runs layers 1..m* (the head), streams the
activation over the Infer RPC paced to this device's uplink rate, and
receives the tail's result. Per inference it measures the head, the upload
(request encoded and paced out), the wait for the server, the download and
the end-to-end delay, with the meter's energy of the head (the offload is
timed, not metered: eq. (13)'s energy is the radio's, which the server
models). ``m* = M`` runs every layer here and sends nothing. An idle
``gap_s`` precedes each inference, as it precedes each profiled pass.

Per-layer latency is measured *in context*: after ``warmup`` forward passes,
``repeats`` full forward passes, each after an idle gap like the one a
device has between inferences (it waits for the server), with a timestamp
around every layer; T^lo_{n,m} is the median over the passes, rescaled so
the layers add up to the median whole pass (see ``layer_profile.layer_delays_in_context``). Isolated
back-to-back layer timings would miss what a real inference pays: caches
gone cold during the wait and, on a CPU-quota'd emulated device, a CFS
budget that refills while the device idles.
"""
import time
from typing import Any, Dict, List, Optional

import torch

from edgebed.device.handlers import HandlerContext, HandlerRegistry, span_summary
from edgebed.device.meter.spans import SpanRecorder
from edgebed.models.split.layer_profile import layer_delays_in_context, profile_split_model
from edgebed.models.split.nets import SplitModel, build_split_model, example_inputs
from edgebed.proto.records import Span

registry = HandlerRegistry()

STATE = "split"
INFER_HANDLER = "split"  # the server's Infer handler name


def _model(ctx: HandlerContext, args: Dict[str, Any]) -> SplitModel:
    """The model named in ``args`` (built once per name, seed and input size)."""
    models = ctx.state.setdefault(STATE, {})
    size = args.get("input_size")
    key = (str(args.get("model", "")), int(args.get("seed", 0)),
           None if size is None else int(size))
    if key not in models:
        models[key] = build_split_model(key[0], key[1], input_size=key[2])  # ValueError if unknown
    return models[key]


@registry.register("split.profile")
def profile(ctx: HandlerContext, args: Dict[str, Any]) -> Dict[str, Any]:
    """Per-layer local delay, bytes per split point and computing power here."""
    model = _model(ctx, args)
    run_id = args.get("run_id", "")
    x = example_inputs(model, 1, int(args.get("input_seed", 0)))
    with ctx.phase("split_profile", run_id=run_id, model=model.name) as span:
        t_local, whole = layer_delays_in_context(model, x, int(args.get("repeats", 15)),
                                         int(args.get("warmup", 3)), float(args.get("gap_s", 0.05)))
    # P^lo_n (eq. 12): the meter's mean power over back-to-back forward passes
    # lasting several CFS periods (so a CPU quota shows in full).
    with ctx.phase("split_power", run_id=run_id, model=model.name) as busy:
        deadline = time.perf_counter() + float(args.get("power_s", 0.3))
        while time.perf_counter() < deadline:
            model.run_layers(x, 0, model.num_layers)
    p_local = busy.span.energy_j / busy.span.duration_s if busy.span.duration_s > 0 else 0.0
    isolated = []
    if args.get("isolated", False):  # the layer_profile recipe too, for comparison
        with ctx.phase("split_profile_isolated", run_id=run_id, model=model.name):
            isolated = [t.median_s for t in profile_split_model(
                model, repeats=int(args.get("repeats", 15)), seed=int(args.get("input_seed", 0)),
                isolated=True)]
    check = float(model.run_layers(x, 0, model.num_layers).double().sum())
    return {
        "model": model.name, "num_layers": model.num_layers,
        "input_shape": list(model.input_shape),
        "t_local_s": t_local, "forward_s": whole, "t_local_isolated_s": isolated,
        "out_bytes": [model.activation_bytes(m) for m in range(model.num_layers + 1)],
        "result_bytes": model.activation_bytes(model.num_layers),
        "p_local_w": p_local, "power_backend": busy.span.power_backend,
        "provenance": busy.span.provenance, "low_confidence": busy.span.low_confidence,
        "profile": span_summary(span), "output_checksum": check,
    }


def _meta(model: SplitModel, args: Dict[str, Any], split: int, i: int) -> Dict[str, str]:
    meta = {"model": model.name, "split": str(split), "seed": str(model.seed),
            "run_id": str(args.get("run_id", "")), "index": str(i)}
    if args.get("input_size") is not None:
        meta["input_size"] = str(int(args["input_size"]))
    if args.get("slots"):
        meta["slots"] = ",".join(str(int(s)) for s in args["slots"])
    return meta


def _infer_once(ctx: HandlerContext, stream, model: SplitModel, x: torch.Tensor, split: int,
                key: str, rate: float, meta: Dict[str, str], run_id: str) -> Dict[str, Any]:
    """One split inference; seconds on this device's clock.

    Its spans are held back until the inference is over: handing them to the
    agent's loop wakes another thread, which is not part of the inference.
    """
    held: List[Any] = []
    recorder = SpanRecorder(ctx.recorder.meter, ctx.name, run_id, held.append)
    row: Dict[str, Any] = {"key": key}
    start = time.perf_counter()
    with recorder.phase("split_head", split=split, key=key) as head:
        act = model.run_head(x, split)
    if stream is None:  # m* = M: all local, nothing to send
        y = act
        row.update(upload_s=0.0, wait_s=0.0, download_s=0.0, up_bytes=0, down_bytes=0)
    else:
        # Timed, not metered: its energy is eq. (13)'s radio (modeled by the
        # server), and meter edges here would sit inside the end-to-end delay.
        call_start = time.perf_counter()
        got, timing = stream.call_timed(key, {"x": act.contiguous()}, handler=INFER_HANDLER,
                                        rate_bps=rate, meta=meta)
        held.append(Span(run_id, "split_offload", ctx.name, call_start, call_start + timing.total_s,
                         start_unix_s=time.time() - timing.total_s, bytes=timing.bytes_up,
                         extra={"split": split, "key": key, "rate_bps": rate,
                                "upload_s": timing.sent_s, "wait_s": timing.wait_s}))
        y = got.tensors["y"]
        row.update(upload_s=timing.sent_s, wait_s=timing.wait_s, download_s=timing.download_s,
                   up_bytes=timing.bytes_up, down_bytes=timing.bytes_down, call_s=timing.total_s)
    row["e2e_s"] = time.perf_counter() - start
    row.update(head_s=head.span.duration_s, head_j=head.span.energy_j,
               provenance=head.span.provenance)
    # Outside the head and the call: the head's meter window edges.
    row["edges_s"] = row["e2e_s"] - row["head_s"] - row.get("call_s", 0.0)
    row["prediction"] = int(y.argmax(dim=1)[0]) if y.dim() == 2 else -1
    row["y"] = y
    for span in held:
        ctx.recorder.sink(span)
    return row


@registry.register("split.run")
def run(ctx: HandlerContext, args: Dict[str, Any]) -> Dict[str, Any]:
    """Run ``n`` split inferences at split ``split``; measured per inference."""
    model = _model(ctx, args)
    if "split" not in args:
        raise ValueError("split.run needs a split point 'split'")
    split = int(args["split"])
    model.check_split(split)  # a clear error before anything runs
    n = int(args.get("n", 10))
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    run_id = str(args.get("run_id", ""))
    prefix = str(args.get("key_prefix", f"split/{run_id}/{ctx.name}"))
    rate = ctx.uplink_bps(args)
    warmup = int(args.get("warmup", 1))
    inputs = example_inputs(model, n, int(args.get("input_seed", 0)))
    gap_s = float(args.get("gap_s", 0.0))
    offload = split < model.num_layers
    stream = ctx.transfers.infer_stream(args.get("timeout_s")) if offload else None
    rows: List[Dict[str, Any]] = []
    max_diff: Optional[float] = None
    try:
        for i in range(warmup):  # untimed: opens the stream, warms caches on both ends
            _infer_once(ctx, stream, model, inputs[i % n:i % n + 1], split, f"{prefix}/warmup{i}",
                        rate, _meta(model, args, split, -1 - i), run_id)
        for i in range(n):
            if gap_s:  # idle before each inference, as before each profiled pass
                time.sleep(gap_s)
            x = inputs[i:i + 1]
            row = _infer_once(ctx, stream, model, x, split, f"{prefix}/{i}", rate,
                              _meta(model, args, split, i), run_id)
            y = row.pop("y")
            if i == 0 and args.get("verify", True):  # untimed: head + tail == full forward
                max_diff = float((y - model.run_layers(x, 0, model.num_layers)).abs().max())
            rows.append(row)
    finally:
        if stream is not None:
            stream.close()
    return {"model": model.name, "split": split, "n": n, "rate_bps": rate,
            "inferences": rows, "max_abs_diff": max_diff,
            "power_backend": getattr(ctx.recorder.meter, "name", "")}
