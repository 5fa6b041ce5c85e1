"""Paper 003 models, flat-vector helpers, latency fits and the feel-latency suite."""
import json
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgebed.models.feel.nets import (DEFAULT_IN_SHAPES, MODEL_NAMES, apply_global_gradient,
                                        build_model, compute_gradient, flat_buffers, flat_gradient,
                                        flat_parameters, has_batchnorm, num_parameters,
                                        parameter_hash, set_flat_buffers, set_flat_parameters,
                                        torchvision_model)
from edgebed.models.feel.latency import (CpuFit, GpuFit, fit_cpu_linear, fit_gpu_piecewise,
                                    measure_gradient_latency)
from edgebed.models.partition import partition_iid, partition_noniid


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(name="cnn", seed=0, shape=None):
    torch.manual_seed(seed)
    return build_model(name, 10, shape or DEFAULT_IN_SHAPES[name])


def _batch(shape, n=2, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand((n,) + tuple(shape), generator=gen), torch.randint(0, 10, (n,), generator=gen)


# --------------------------------------------------------------------------- models


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_each_model_builds_and_backpropagates_on_its_input_shape(name):
    shape = DEFAULT_IN_SHAPES[name]
    model = _model(name)
    x, y = _batch(shape)
    assert tuple(model(x).shape) == (2, 10)
    grad, loss = compute_gradient(model, x, y)
    assert grad.dtype == torch.float32 and grad.numel() == num_parameters(model)
    assert math.isfinite(loss) and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert has_batchnorm(model) == (name not in ("cnn", "lenet"))


def test_small_cnn_is_the_fedavg_mnist_cnn():
    assert num_parameters(_model("cnn")) == 1663370


@pytest.mark.parametrize("name,shape", [("cnn", (3, 32, 32)), ("resnet18", (1, 28, 28)),
                                        ("mobilenetv2", (1, 28, 28)), ("resnet18", (3, 72, 80))])
def test_models_adapt_to_other_shapes(name, shape):
    model = _model(name, shape=shape)
    x, _ = _batch(shape)
    assert tuple(model(x).shape) == (2, 10)


def test_small_inputs_get_cifar_stems_and_large_ones_keep_imagenet_stems():
    r = _model("resnet18")
    assert r.conv1.kernel_size == (3, 3) and r.conv1.stride == (1, 1)
    assert isinstance(r.maxpool, nn.Identity)
    big = _model("resnet18", shape=(3, 96, 96))
    assert big.conv1.kernel_size == (7, 7) and isinstance(big.maxpool, nn.MaxPool2d)
    gray = _model("resnet18", shape=(1, 96, 96))
    assert gray.conv1.in_channels == 1 and gray.conv1.stride == (2, 2)
    m = _model("mobilenetv2")
    strides = [mod.stride for mod in m.features.modules() if isinstance(mod, nn.Conv2d)]
    assert strides.count((2, 2)) == 3  # ImageNet MobileNetV2 has 5: total stride 8 instead of 32


def test_torchvision_compat_helper_uses_the_argument_the_version_has(monkeypatch):
    import torchvision.models as tvm

    seen = {}

    def old_style(pretrained=False, progress=True, **kwargs):
        seen["old"] = (pretrained, kwargs)
        return nn.Linear(1, 1)

    def new_style(*, weights=None, progress=True, **kwargs):
        seen["new"] = (weights, kwargs)
        return nn.Linear(1, 1)

    monkeypatch.setattr(tvm, "old_style_net", old_style, raising=False)
    monkeypatch.setattr(tvm, "new_style_net", new_style, raising=False)
    torchvision_model("old_style_net", num_classes=3)
    torchvision_model("new_style_net", num_classes=3)
    assert seen == {"old": (False, {"num_classes": 3}), "new": (None, {"num_classes": 3})}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecation warning from the real constructor
        torchvision_model("mobilenet_v2", num_classes=10)


@pytest.mark.parametrize("kwargs", [{"name": "vgg"}, {"name": "cnn", "in_shape": (1, 2, 2)},
                                    {"name": "resnet18", "in_shape": (3, 32)},
                                    {"name": "cnn", "num_classes": 1}])
def test_build_model_rejects_bad_input(kwargs):
    with pytest.raises(ValueError):
        build_model(**kwargs)


# --------------------------------------------------------------------------- flat vectors and hashes


def test_identically_seeded_models_hash_equal_and_differently_seeded_do_not():
    assert parameter_hash(_model("cnn", 3)) == parameter_hash(_model("cnn", 3))
    assert parameter_hash(_model("cnn", 3)) != parameter_hash(_model("cnn", 4))
    assert parameter_hash(_model("mobilenetv2", 3)) == parameter_hash(_model("mobilenetv2", 3))


def test_flat_parameter_round_trip():
    a, b = _model("cnn", 1), _model("cnn", 2)
    vec = flat_parameters(a)
    assert vec.dim() == 1 and vec.dtype == torch.float32 and vec.numel() == num_parameters(a)
    set_flat_parameters(b, vec)
    assert torch.equal(flat_parameters(b), vec)
    assert parameter_hash(a) == parameter_hash(b)
    vec[0] += 1.0  # flat_parameters returns a copy
    assert parameter_hash(a) == parameter_hash(b)


def test_flat_buffers_round_trip_makes_batchnorm_models_identical():
    a, b = _model("mobilenetv2", 1), _model("mobilenetv2", 2)
    set_flat_parameters(b, flat_parameters(a))
    compute_gradient(a, *_batch((3, 32, 32)))  # moves a's running stats
    b.load_state_dict({k: v for k, v in a.state_dict().items() if k.endswith("num_batches_tracked")},
                      strict=False)
    assert parameter_hash(a) != parameter_hash(b)
    set_flat_buffers(b, flat_buffers(a))
    assert parameter_hash(a) == parameter_hash(b)


def test_hash_changes_after_one_update():
    model = _model("cnn")
    before = parameter_hash(model)
    grad, _ = compute_gradient(model, *_batch((1, 28, 28)))
    assert parameter_hash(model) == before  # a gradient alone does not change the model
    apply_global_gradient(model, grad, 0.1)
    assert parameter_hash(model) != before


def test_gradient_helper_matches_autograd():
    model = _model("cnn")
    x, y = _batch((1, 28, 28), n=4)
    grad, loss = compute_gradient(model, x, y)
    ref = _model("cnn")
    ref_loss = F.cross_entropy(ref(x), y)
    ref_grads = torch.autograd.grad(ref_loss, list(ref.parameters()))
    assert loss == pytest.approx(ref_loss.item(), rel=1e-6)
    assert torch.allclose(grad, torch.cat([g.reshape(-1) for g in ref_grads]), rtol=1e-5, atol=1e-7)
    assert torch.equal(flat_gradient(model), grad)
    again, _ = compute_gradient(model, x, y)  # gradients are zeroed first, not accumulated
    assert torch.allclose(again, grad, rtol=1e-5, atol=1e-7)


def test_apply_global_gradient_is_w_minus_lr_g():
    model = _model("cnn")
    w = flat_parameters(model)
    g = torch.randn(w.shape, generator=torch.Generator().manual_seed(0))
    apply_global_gradient(model, g, 0.05)
    assert torch.equal(flat_parameters(model), w - g * torch.tensor(0.05, dtype=torch.float32))


def test_feel_round_with_batchnorm_keeps_devices_bit_identical():
    """The protocol of the module docstring: average gradients and float buffers by batch size."""
    devices = [_model("mobilenetv2", 7) for _ in range(2)]
    batches = [_batch((3, 32, 32), n=2, seed=10), _batch((3, 32, 32), n=4, seed=11)]
    grads, bufs, sizes = [], [], []
    for model, (x, y) in zip(devices, batches):
        g, _ = compute_gradient(model, x, y)
        grads.append(g)
        bufs.append(flat_buffers(model))
        sizes.append(len(y))
    assert parameter_hash(devices[0]) != parameter_hash(devices[1])  # running stats diverged
    total = float(sum(sizes))
    g_avg = sum(s / total * g for s, g in zip(sizes, grads))
    b_avg = sum(s / total * b for s, b in zip(sizes, bufs))
    for model in devices:
        apply_global_gradient(model, g_avg, 0.01)
        set_flat_buffers(model, b_avg)
    assert parameter_hash(devices[0]) == parameter_hash(devices[1])


def test_keep_buffers_restores_running_stats():
    model = _model("mobilenetv2")
    before = parameter_hash(model)
    compute_gradient(model, *_batch((3, 32, 32)), keep_buffers=True)
    assert parameter_hash(model) == before
    compute_gradient(model, *_batch((3, 32, 32)))
    assert parameter_hash(model) != before


def test_flat_vector_helpers_reject_bad_input():
    model = _model("cnn")
    n = num_parameters(model)
    with pytest.raises(ValueError, match="elements"):
        set_flat_parameters(model, torch.zeros(n - 1))
    with pytest.raises(ValueError, match="floating point"):
        set_flat_parameters(model, torch.zeros(n, dtype=torch.long))
    with pytest.raises(ValueError, match="shape"):
        apply_global_gradient(model, torch.zeros(3), 0.1)
    with pytest.raises(ValueError, match="learning rate"):
        apply_global_gradient(model, torch.zeros(n), 0.0)
    with pytest.raises(ValueError, match="label"):
        compute_gradient(model, torch.zeros(2, 1, 28, 28), torch.zeros(3, dtype=torch.long))


# --------------------------------------------------------------------------- latency


def test_measure_gradient_latency_returns_medians_and_restores_the_model():
    model = _model("mobilenetv2")
    model.eval()
    before = parameter_hash(model)
    out = measure_gradient_latency(model, (3, 32, 32), [2, 1, 2], repeats=2, warmup=1)
    assert list(out) == [2, 1]
    assert all(v > 0 for v in out.values())
    assert parameter_hash(model) == before and not model.training
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("kwargs", [{"batch_sizes": [0]}, {"batch_sizes": []}, {"batch_sizes": [1.5]},
                                    {"batch_sizes": [1], "repeats": 0},
                                    {"batch_sizes": [1], "warmup": -1}])
def test_measure_gradient_latency_rejects_bad_input(kwargs):
    with pytest.raises(ValueError):
        measure_gradient_latency(_model("cnn"), (1, 28, 28), **kwargs)


BATCHES = [1, 2, 4, 8, 16, 32, 64, 128]


def test_cpu_fit_recovers_exact_linear_coefficients():
    fit = fit_cpu_linear(BATCHES, [0.003 * b + 0.02 for b in BATCHES])
    assert isinstance(fit, CpuFit)
    assert fit.seconds_per_sample == pytest.approx(0.003)
    assert fit.fixed_s == pytest.approx(0.02)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.predict(10) == pytest.approx(0.05)
    origin = fit_cpu_linear(BATCHES, [0.003 * b for b in BATCHES], through_origin=True)
    assert origin.fixed_s == 0.0 and origin.seconds_per_sample == pytest.approx(0.003)
    assert origin.r2 == pytest.approx(1.0)


def test_cpu_fit_r2_drops_with_noise():
    rng = np.random.default_rng(0)
    seconds = [0.003 * b + 0.02 + rng.normal(0, 0.02) for b in BATCHES]
    fit = fit_cpu_linear(BATCHES, seconds)
    assert 0.9 < fit.r2 < 1.0
    assert fit.seconds_per_sample == pytest.approx(0.003, rel=0.2)


@pytest.mark.parametrize("batches", [BATCHES, list(range(1, 129))])
@pytest.mark.parametrize("threshold", [16, 32])
def test_gpu_fit_finds_the_threshold(batches, threshold):
    seconds = [0.1 if b <= threshold else 0.1 + 0.002 * (b - threshold) for b in batches]
    fit = fit_gpu_piecewise(batches, seconds)
    assert isinstance(fit, GpuFit)
    assert fit.threshold_batch == threshold
    assert fit.flat_s == pytest.approx(0.1)
    assert fit.seconds_per_sample == pytest.approx(0.002)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.predict(threshold) == pytest.approx(fit.predict(threshold + 1e-9))  # continuous


def test_gpu_fit_of_flat_data_is_flat_over_the_whole_range():
    fit = fit_gpu_piecewise(BATCHES, [0.2] * len(BATCHES))
    assert fit.threshold_batch == 128 and fit.seconds_per_sample == 0.0
    assert fit.flat_s == pytest.approx(0.2) and fit.r2 == 1.0


def test_gpu_fit_of_linear_data_has_no_flat_region():
    fit = fit_gpu_piecewise(BATCHES, [0.003 * b + 0.02 for b in BATCHES])
    assert fit.threshold_batch == 1 and fit.seconds_per_sample == pytest.approx(0.003)
    assert fit.r2 == pytest.approx(1.0)


@pytest.mark.parametrize("fit", [fit_cpu_linear, fit_gpu_piecewise])
@pytest.mark.parametrize("batches,seconds,match", [
    ([4, 4, 4], [0.1, 0.2, 0.3], "2 distinct batch sizes"),
    ([1], [0.1], "2 distinct batch sizes"),
    ([1, 2], [0.1], "as many latencies"),
    ([0, 2], [0.1, 0.2], "positive"),
    ([1, 2], [0.1, -0.2], "non-negative"),
    ([1, 2], [0.1, float("nan")], "finite"),
    ([1, "x"], [0.1, 0.2], "numbers"),
])
def test_fits_reject_bad_input(fit, batches, seconds, match):
    with pytest.raises(ValueError, match=match):
        fit(batches, seconds)


# --------------------------------------------------------------------------- partitions (section VI-A)


def test_noniid_partition_is_sort_by_label_2k_shards_two_per_device():
    labels = np.repeat(np.arange(10), 100)  # shard size (1000 / 10) equals the class size
    parts = partition_noniid(labels, 5, shards_per_device=2, seed=3)
    assert sorted(torch.cat(parts).tolist()) == list(range(1000))
    for part in parts:
        counts = np.bincount(labels[part.numpy()], minlength=10)
        assert len(part) == 200 and set(counts.tolist()) <= {0, 100, 200}
    iid = partition_iid(1000, 5, seed=3)
    assert [len(p) for p in iid] == [200] * 5


# --------------------------------------------------------------------------- suite


def test_feel_latency_suite_smoke(tmp_path):
    from edgebed.benchmarks.cli import main

    rc = main(["feel-latency", "--models", "cnn", "--batches", "1,2,3", "--repeats", "1",
               "--warmup", "0", "--model-warmup-s", "0", "--threads", "1",
               "--results", str(tmp_path), "--run-id", "t"])
    assert rc == 0
    run = tmp_path / "feel-latency" / "t"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["batch"] == [1, 2, 3]
    assert len(summary["latency_s"]["cnn"]) == 3 and "cnn" in summary["fit_r2"]
    assert set(summary["fits"]["cnn"]) == {"cpu_linear", "cpu_through_origin", "gpu_piecewise"}
    assert summary["provenance"]["latency_s"].startswith("measured")
    assert summary["provenance"]["fit_r2"].startswith("derived")
    assert set(summary["provenance"]) == set(summary) - {"provenance"}
    for name in ("latency.csv", "fits.csv", "fig2_latency.png", "fig2_cnn.png", "events.jsonl"):
        assert (run / name).is_file(), name


def test_standardize_centres_each_channel_and_is_deterministic():
    from edgebed.models.datasets import standardize
    gen = torch.Generator().manual_seed(0)
    images = torch.rand((50, 3, 4, 4), generator=gen) * torch.tensor([1.0, 5.0, 0.1]).view(1, 3, 1, 1)
    out = standardize(images)
    assert torch.allclose(out.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(out.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-4)
    assert torch.equal(out, standardize(images.clone()))  # same map on every device
    constant = standardize(torch.ones((4, 1, 2, 2)))
    assert torch.isfinite(constant).all()
