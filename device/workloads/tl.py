"""Device side of the transfer-learning workload (paper 000, section III-A).

Every step is a measured span, so the energy terms of eqs. (1)-(2) are
measured on the device, not assumed:
- ``tl.prepare``: load this device's share of the data, train its
  autoencoder (step 1) — span ``ae_train``.
- ``tl.profile``: short measured runs the server's JUDBA solver needs before
  deciding (step 2): encoding time and energy per sample (gives f_i through
  eq. (5)), idle power, and the energy of one fine-tuning epoch.
- ``tl.encode_upload``: encode the training set (span ``encode``: t_comp,
  e_encode) and, if chosen, upload latents and labels at the allocated rate
  (span ``upload``: t_comm, e_trans) (step 3).
- ``tl.await_model``: wait for the edge CNN (span ``idle``: e_idle), download
  it (span ``download``: e_down), fine-tune it when the device did not upload
  (span ``tune``: e_tune), classify the local test set (span ``infer``:
  e_inf) (step 5).
"""
import time
from typing import Any, Dict

import torch

from edgebed.device.handlers import HandlerContext, HandlerRegistry, span_summary
from edgebed.models.datasets import load_dataset
from edgebed.models.flops import count_macs
from edgebed.models.partition import partition
from edgebed.models.tl.autoencoder import ConvAutoencoder, encode_all, train_autoencoder
from edgebed.models.tl.edge_cnn import EdgeCNN, evaluate, train_classifier
from edgebed.proto.contracts import tl

registry = HandlerRegistry()

STATE = "tl"
PROFILE_SAMPLES = 256


def _state(ctx: HandlerContext) -> Dict[str, Any]:
    if STATE not in ctx.state:
        raise ValueError("tl.prepare must run before this command")
    return ctx.state[STATE]


def _encode(state: Dict[str, Any], images: torch.Tensor) -> torch.Tensor:
    if state["autoencoder"] is None:  # lambda = 1: the raw images are the "latents"
        return images.clone()
    return encode_all(state["autoencoder"], images)


@registry.command(tl.PREPARE)
def prepare(ctx: HandlerContext, req: tl.PrepareIns) -> tl.PrepareRes:
    """Load this device's partition and train its autoencoder (lambda > 1)."""
    torch.manual_seed(req.seed + req.index)
    images, labels = load_dataset(req.dataset, req.data_root, max_samples=req.max_samples,
                                  seed=req.seed)
    splits = partition(labels, req.num_devices, req.partition, seed=req.seed)
    mine = splits[req.index]
    state = {
        "lam": req.lam,
        "train_x": images[mine.train], "train_y": labels[mine.train],
        "test_x": images[mine.test], "test_y": labels[mine.test],
        "autoencoder": None, "num_classes": int(labels.max()) + 1,
    }
    ae_loss, ae_train = None, None
    if req.lam > 1:
        model = ConvAutoencoder(tuple(images.shape[1:]), req.lam)
        with ctx.phase("ae_train", run_id=req.run_id) as span:
            losses = train_autoencoder(model, state["train_x"], req.ae_epochs, lr=req.ae_lr,
                                       seed=req.seed)
        state["autoencoder"] = model
        ae_loss, ae_train = (losses[-1] if losses else None), span_summary(span)
    latent_shape = tuple(_encode(state, state["train_x"][:1]).shape[1:])
    state["latent_shape"] = latent_shape
    ctx.state[STATE] = state
    ae = state["autoencoder"]
    return tl.PrepareRes(
        train_samples=int(mine.train.numel()), test_samples=int(mine.test.numel()),
        latent_shape=list(latent_shape), num_classes=state["num_classes"],
        # c of eq. (5): the encoder's multiply-accumulates per sample.
        encoder_macs=count_macs(ae, images.shape[1:], ae.encode) if ae is not None else 0,
        ae_loss=ae_loss, ae_train=ae_train)


@registry.command(tl.PROFILE)
def profile(ctx: HandlerContext, req: tl.ProfileIns) -> tl.ProfileRes:
    """Measure what the solver needs before it decides (section IV inputs)."""
    state = _state(ctx)
    run_id = req.run_id
    sample = state["train_x"][:PROFILE_SAMPLES]
    _encode(state, sample[:8])  # warm-up: first-call allocations are not the device's speed
    with ctx.phase("profile_encode", run_id=run_id) as enc:
        repeats = 0
        start = time.perf_counter()
        while repeats == 0 or time.perf_counter() - start < 0.3:
            latents = _encode(state, sample)
            repeats += 1
    per_sample_s = enc.span.duration_s / (repeats * sample.shape[0])
    with ctx.phase("profile_idle", run_id=run_id) as idle:
        time.sleep(req.idle_s)
    cnn = EdgeCNN(state["latent_shape"], state["num_classes"])
    labels = state["train_y"][:sample.shape[0]]
    train_classifier(cnn, latents[:8], labels[:8], epochs=1)  # warm-up, as for encoding
    with ctx.phase("profile_tune", run_id=run_id) as tune:
        train_classifier(cnn, latents, labels, epochs=1)
    # One tuning epoch over the whole training set, scaled from the measured
    # sample epoch: an estimate, labelled so (tune_provenance).
    tune_scale = state["train_x"].shape[0] / sample.shape[0]
    return tl.ProfileRes(
        encode_s_per_sample=per_sample_s,
        encode_j_per_sample=enc.span.energy_j / (repeats * sample.shape[0]),
        idle_power_w=idle.span.energy_j / idle.span.duration_s,
        tune_epoch_s=tune.span.duration_s * tune_scale,
        tune_epoch_j=tune.span.energy_j * tune_scale,
        latent_bytes_per_sample=int(latents[0].numel() * latents.element_size()),
        provenance=enc.span.provenance,
        tune_provenance=f"estimated (scaled from a measured epoch of {sample.shape[0]} samples)",
        power_backend=enc.span.power_backend,
    )


@registry.command(tl.ENCODE_UPLOAD)
def encode_upload(ctx: HandlerContext, req: tl.EncodeUploadIns) -> tl.EncodeUploadRes:
    """Encode the training set; upload latents and labels if chosen (rho_i = 1)."""
    state = _state(ctx)
    with ctx.phase("encode", run_id=req.run_id) as enc:
        latents = _encode(state, state["train_x"])
    state["train_z"] = latents
    if not req.upload:
        return tl.EncodeUploadRes(encode=span_summary(enc), samples=int(latents.shape[0]))
    meta = tl.LatentMeta(lam=state["lam"], samples=int(latents.shape[0])).to_meta()
    with ctx.phase("upload", run_id=req.run_id, rate_bps=req.uplink_bps) as up:
        stats = ctx.transfers.upload(req.key, {"latents": latents, "labels": state["train_y"]},
                                     rate_bps=req.uplink_bps, meta=meta)
        up.bytes = stats.bytes
    return tl.EncodeUploadRes(encode=span_summary(enc), samples=int(latents.shape[0]),
                              upload=span_summary(up), bytes=stats.bytes,
                              rate_bps=stats.rate_bps)


@registry.command(tl.AWAIT_MODEL)
def await_model(ctx: HandlerContext, req: tl.AwaitModelIns) -> tl.AwaitModelRes:
    """Idle until the edge CNN is offered, download it, tune if told, infer."""
    state = _state(ctx)
    # Idle while the server trains the CNN (e_idle), then download it (e_down).
    got, idle, down = ctx.download_after_wait(req.key, "idle", req.wait_s, run_id=req.run_id)
    cnn = EdgeCNN(state["latent_shape"], state["num_classes"])
    cnn.load_state_dict(got.tensors)
    tune = None
    if req.tune:
        with ctx.phase("tune", run_id=req.run_id) as handle:
            train_classifier(cnn, state["train_z"], state["train_y"], epochs=req.tune_epochs)
        tune = span_summary(handle)
    test_z = _encode(state, state["test_x"])
    with ctx.phase("infer", run_id=req.run_id) as inf:
        accuracy, _ = evaluate(cnn, test_z, state["test_y"])
    return tl.AwaitModelRes(idle=span_summary(idle), download=span_summary(down),
                            infer=span_summary(inf), accuracy=accuracy, tune=tune)
