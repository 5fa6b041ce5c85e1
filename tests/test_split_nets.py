"""Split models: layer counts, head + tail == full forward, shape and range errors, weights."""
import numpy as np
import pytest
import torch

from edgebed.models.split.layer_profile import (
    merge_timings,
    profile_split_model,
    time_calls,
)
from edgebed.models.split.nets import (SPLIT_MODEL_NAMES, build_split_model, example_inputs)

# Small inputs keep the ImageNet networks cheap; the layer structure does not change.
# The VGGs (138M weights, mostly the classifier) only run in the slow test.
FAST = {"lenet": None, "alexnet": 64, "resnet18": 64, "mobilenetv2": 64}
LAYERS = {"lenet": 12, "alexnet": 21, "vgg13": 33, "vgg16": 39, "resnet18": 14, "mobilenetv2": 22}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def models(one_torch_thread):
    return {n: build_split_model(n, seed=3, input_size=size) for n, size in FAST.items()}


def _check_head_tail(name, model, splits):
    x = example_inputs(model, 2, seed=1)
    full = model.run_head(x, model.num_layers)
    assert full.shape == (2, 10 if name == "lenet" else 1000)
    for m in splits:
        act = model.run_head(x, m)
        assert tuple(act.shape[1:]) == model.activation_shape(m)
        assert model.activation_bytes(m) == 4 * act[0].numel()
        assert torch.equal(model.run_tail(act, m), full), (name, m)


def test_layer_counts_match_the_documented_granularity(models):
    assert set(SPLIT_MODEL_NAMES) == set(LAYERS)
    for name, model in models.items():
        assert model.num_layers == LAYERS[name] == len(model.infos), name
        assert [i.index for i in model.infos] == list(range(1, model.num_layers + 1))


def test_head_plus_tail_equals_the_full_forward_at_every_split(models):
    for name, model in models.items():
        _check_head_tail(name, model, range(model.num_layers + 1))


@pytest.mark.slow
def test_vgg_layer_counts_and_splits():
    for name in ("vgg13", "vgg16"):
        model = build_split_model(name, input_size=64)
        assert model.num_layers == LAYERS[name]
        assert [i.kind for i in model.infos[-8:]] == ["pool", "fc", "relu", "dropout", "fc", "relu",
                                                      "dropout", "fc"]
        _check_head_tail(name, model, (0, 1, model.num_layers // 2, model.num_layers - 1, model.num_layers))


def test_running_a_layer_leaves_its_input_unchanged(models):
    model = models["alexnet"]
    x = example_inputs(model, 1)
    act = model.run_head(x, 1)  # conv output, the input of an (out-of-place) ReLU
    before = act.clone()
    model.run_tail(act, 1)
    assert torch.equal(act, before)


def test_same_name_and_seed_give_identical_weights_and_another_seed_does_not(models):
    a, b = models["mobilenetv2"], build_split_model("mobilenetv2", 3, 64)
    c = build_split_model("mobilenetv2", 4, 64)
    pa, pb, pc = (list(m.layers.parameters()) for m in (a, b, c))
    assert all(torch.equal(u, v) for u, v in zip(pa, pb))
    assert not torch.equal(pa[0], pc[0])
    w = pa[0].detach().numpy()
    bound = np.sqrt(6.0 / w[0].size)
    assert np.abs(w).max() <= bound and w.std() > 0.5 * bound  # Kaiming-uniform: std = bound / sqrt(3)


def test_layer_infos_have_shapes_bytes_macs_and_factors(models):
    alex = models["alexnet"]
    conv1 = alex.infos[0]
    assert (conv1.kind, conv1.K, conv1.O, conv1.I) == ("conv", 11, 3, 64)
    assert conv1.macs == int(np.prod(conv1.out_shape)) * 11 * 11 * 3
    assert conv1.out_bytes == 4 * int(np.prod(conv1.out_shape))
    assert alex.infos[13].name == "avgpool" and [p.kind for p in alex.infos[13].parts] == ["pool", "flatten"]
    fc = alex.infos[15]
    assert (fc.kind, fc.G, fc.K, fc.O, fc.I) == ("fc", 1, 1, 9216, 4096)
    block = models["resnet18"].infos[4]
    assert block.name == "layer1.0" and block.kind == "block"
    assert sorted(p.kind for p in block.parts) == ["add", "conv", "conv", "norm", "norm", "relu", "relu"]
    assert block.macs == sum(p.macs for p in block.parts) > 0
    dw = [p for i in models["mobilenetv2"].infos for p in i.parts if p.kind == "dwconv"]
    assert dw and all(p.O == p.I for p in dw)


def test_unknown_model_and_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match="known models: lenet, alexnet"):
        build_split_model("googlenet")
    with pytest.raises(ValueError, match="input_size"):
        build_split_model("vgg16", input_size=16)
    with pytest.raises(ValueError, match="28"):
        build_split_model("lenet", input_size=32)


def test_split_point_out_of_range_names_model_and_range(models):
    model = models["lenet"]
    for bad in (-1, 13, 2.0, True):
        with pytest.raises(ValueError, match=r"lenet.*0\.\.12"):
            model.check_split(bad)


def test_shape_mismatch_names_both_shapes(models):
    model = models["lenet"]
    with pytest.raises(ValueError) as err:
        model.run_tail(torch.zeros(1, 6, 28, 28), 3)
    assert "1x6x28x28" in str(err.value) and "6x14x14" in str(err.value)
    with pytest.raises(ValueError, match="3x28x28"):
        model.run_head(torch.zeros(2, 3, 28, 28), 4)


def test_example_inputs_are_seeded_and_shaped(models):
    model = models["resnet18"]
    x = example_inputs(model, 3, seed=2)
    assert x.shape == (3, 3, 64, 64) and torch.equal(x, example_inputs(model, 3, seed=2))
    digits = example_inputs(models["lenet"], 4)
    assert digits.shape == (4, 1, 28, 28) and 0.0 <= float(digits.min()) and float(digits.max()) <= 1.0
    with pytest.raises(ValueError):
        example_inputs(model, 0)


def test_profile_returns_one_positive_median_per_layer(models):
    model = models["lenet"]
    timings = profile_split_model(model, repeats=2, warmup=0, min_sample_s=0.0)
    assert [t.info for t in timings] == model.infos
    assert all(t.median_s > 0 and len(t.samples_s) == 2 for t in timings)
    assert timings[0].row()[:5] == ("conv", 28, 5, 1, 6)


def test_isolated_profile_and_merging_pool_the_samples(models):
    model = models["lenet"]
    a = profile_split_model(model, repeats=2, warmup=0, isolated=True, min_sample_s=0.0)
    b = profile_split_model(model, repeats=3, warmup=0)
    merged = merge_timings([a, b])
    assert [len(t.samples_s) for t in merged] == [5] * model.num_layers
    assert all(min(t.samples_s) <= t.median_s <= max(t.samples_s) for t in merged)
    with pytest.raises(ValueError, match="same layers"):
        merge_timings([a, a[:-1]])


def test_discounting_preemption_needs_one_thread(one_torch_thread):
    torch.set_num_threads(2)
    try:
        with pytest.raises(ValueError, match="set_num_threads"):
            time_calls([lambda: None], discount_preemption=True)
    finally:
        torch.set_num_threads(1)
    assert len(time_calls([lambda: None], 2, 0, discount_preemption=True)[0].samples_s) == 2


def test_time_calls_counts_calls_and_rejects_bad_input():
    calls = []
    out = time_calls([lambda: calls.append(1)], repeats=3, warmup=2, min_sample_s=0.0)
    assert len(out[0].samples_s) == 3 and out[0].inner == 1 and len(calls) == 2 + 1 + 3
    with pytest.raises(ValueError):
        time_calls([lambda: None], repeats=0)
    with pytest.raises(ValueError):
        time_calls([lambda: None], warmup=-1)
