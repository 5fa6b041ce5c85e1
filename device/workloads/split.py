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
from typing import Any, List, Optional

import torch

from edgebed.device.handlers import HandlerContext, HandlerRegistry, span_summary
from edgebed.device.meter.spans import SpanRecorder
from edgebed.device.transfer_client import InferTiming
from edgebed.models.split.layer_profile import layer_delays_in_context, profile_split_model
from edgebed.models.split.nets import SplitModel, build_split_model, example_inputs
from edgebed.proto.contracts import split
from edgebed.proto.records import Span

registry = HandlerRegistry()

STATE = "split"


def _model(ctx: HandlerContext, ref: split.ModelRef) -> SplitModel:
    """The model ``ref`` names (built once per name, seed and input size)."""
    models = ctx.state.setdefault(STATE, {})
    key = (ref.name, ref.seed, ref.input_size)
    if key not in models:
        models[key] = build_split_model(ref.name, ref.seed, input_size=ref.input_size)
    return models[key]


@registry.command(split.PROFILE)
def profile(ctx: HandlerContext, req: split.ProfileIns) -> split.ProfileRes:
    """Per-layer local delay, bytes per split point and computing power here."""
    model = _model(ctx, req.model)
    x = example_inputs(model, 1, req.input_seed)
    with ctx.phase("split_profile", run_id=req.run_id, model=model.name) as span:
        t_local, whole = layer_delays_in_context(model, x, req.repeats, req.warmup, req.gap_s)
    # P^lo_n (eq. 12): the meter's mean power over back-to-back forward passes
    # lasting several CFS periods (so a CPU quota shows in full).
    with ctx.phase("split_power", run_id=req.run_id, model=model.name) as busy:
        deadline = time.perf_counter() + req.power_s
        while time.perf_counter() < deadline:
            model.run_layers(x, 0, model.num_layers)
    p_local = busy.span.energy_j / busy.span.duration_s if busy.span.duration_s > 0 else 0.0
    isolated: List[float] = []
    if req.isolated:  # the layer_profile recipe too, for comparison
        with ctx.phase("split_profile_isolated", run_id=req.run_id, model=model.name):
            isolated = [t.median_s for t in profile_split_model(
                model, repeats=req.repeats, seed=req.input_seed, isolated=True)]
    check = float(model.run_layers(x, 0, model.num_layers).double().sum())
    return split.ProfileRes(
        model=model.name, num_layers=model.num_layers, input_shape=list(model.input_shape),
        t_local_s=list(t_local), forward_s=whole, t_local_isolated_s=isolated,
        out_bytes=[float(model.activation_bytes(m)) for m in range(model.num_layers + 1)],
        result_bytes=float(model.activation_bytes(model.num_layers)),
        p_local_w=p_local, power_backend=busy.span.power_backend,
        provenance=busy.span.provenance, low_confidence=busy.span.low_confidence,
        profile=span_summary(span), output_checksum=check,
    )


# The all-local inference's (m* = M) round trip: none, every figure zero.
_NO_CALL = InferTiming(bytes_up=0, bytes_down=0, sent_s=0.0, first_reply_s=0.0, total_s=0.0)


def _infer_once(ctx: HandlerContext, stream, model: SplitModel, x: torch.Tensor,
                req: split.RunIns, key: str, meta: split.InferMeta):
    """One split inference; seconds on this device's clock. Returns the row
    and the output.

    Its spans are held back until the inference is over: handing them to the
    agent's loop wakes another thread, which is not part of the inference.
    """
    held: List[Any] = []
    recorder = SpanRecorder(ctx.recorder.meter, ctx.name, req.run_id, held.append)
    start = time.perf_counter()
    with recorder.phase("split_head", split=req.split, key=key) as head:
        act = model.run_head(x, req.split)
    if stream is None:  # m* = M: all local, nothing to send
        y = act
        timing = _NO_CALL
    else:
        # Timed, not metered: its energy is eq. (13)'s radio (modeled by the
        # server), and meter edges here would sit inside the end-to-end delay.
        call_start = time.perf_counter()
        got, timing = stream.call_timed(key, {"x": act.contiguous()},
                                        handler=split.infer_handler(req.run_id),
                                        rate_bps=req.uplink_bps,
                                        meta=meta.to_meta())
        held.append(Span(req.run_id, "split_offload", ctx.name, call_start,
                         call_start + timing.total_s, start_unix_s=time.time() - timing.total_s,
                         bytes=timing.bytes_up,
                         extra={"split": req.split, "key": key, "rate_bps": req.uplink_bps,
                                "upload_s": timing.sent_s, "wait_s": timing.wait_s}))
        y = got.tensors["y"]
    e2e = time.perf_counter() - start
    call_s = timing.total_s
    row = split.InferenceRow(
        key=key, e2e_s=e2e, head_s=head.span.duration_s, head_j=head.span.energy_j,
        upload_s=timing.sent_s, wait_s=timing.wait_s, download_s=timing.download_s,
        up_bytes=timing.bytes_up, down_bytes=timing.bytes_down,
        # Outside the head and the call: the head's meter window edges.
        edges_s=e2e - head.span.duration_s - call_s, provenance=head.span.provenance,
        prediction=int(y.argmax(dim=1)[0]) if y.dim() == 2 else -1, call_s=call_s)
    for span in held:
        ctx.recorder.sink(span)
    return row, y


@registry.command(split.RUN)
def run(ctx: HandlerContext, req: split.RunIns) -> split.RunRes:
    """Run ``n`` split inferences at split ``split``; measured per inference."""
    model = _model(ctx, req.model)
    model.check_split(req.split)  # a clear error before anything runs
    inputs = example_inputs(model, req.n, req.input_seed)
    offload = req.split < model.num_layers
    stream = ctx.transfers.infer_stream(req.timeout_s) if offload else None
    keys = split.SplitKeys(req.run_id)

    def meta(i: int) -> split.InferMeta:
        return split.InferMeta(model=model.name, split=req.split, seed=model.seed,
                               run_id=req.run_id, tag=req.tag, index=i,
                               input_size=req.model.input_size,
                               slots=tuple(req.slots) if req.slots else None)

    rows: List[split.InferenceRow] = []
    max_diff: Optional[float] = None
    try:
        for i in range(req.warmup):  # untimed: opens the stream, warms caches on both ends
            j = i % req.n
            _infer_once(ctx, stream, model, inputs[j:j + 1], req,
                        keys.request(req.tag, ctx.name, f"warmup{i}"), meta(-1 - i))
        for i in range(req.n):
            if req.gap_s:  # idle before each inference, as before each profiled pass
                time.sleep(req.gap_s)
            x = inputs[i:i + 1]
            row, y = _infer_once(ctx, stream, model, x, req,
                                 keys.request(req.tag, ctx.name, i), meta(i))
            if i == 0 and req.verify:  # untimed: head + tail == full forward
                max_diff = float((y - model.run_layers(x, 0, model.num_layers)).abs().max())
            rows.append(row)
    finally:
        if stream is not None:
            stream.close()
    return split.RunRes(model=model.name, split=req.split, n=req.n, uplink_bps=req.uplink_bps,
                        power_backend=getattr(ctx.recorder.meter, "name", ""), inferences=rows,
                        max_abs_diff=max_diff)
