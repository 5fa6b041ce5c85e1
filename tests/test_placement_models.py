"""Light and heavy DNNs per task type, trained once and cached, their measured accuracy,
size and inference time, the noise model and task inputs (edgebed.models.placement)."""

import dataclasses
import io
import math

import numpy as np
import pytest
import torch
from edgebed.models.placement import measure, tasks, zoo
from edgebed.models.placement.nets import HEAVY, LIGHT

TINY = zoo.TINY


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_torch_thread):
    cache = str(tmp_path_factory.mktemp("placement-cache"))
    z = zoo.load_or_train(TINY, cache)
    records = measure.measure_catalogue(z, noise_draws=2, warmup=1, repeats=3)
    return cache, z, {r.key: r for r in records}


def test_at_least_four_task_types_with_a_light_and_a_deeper_heavy_model(trained):
    _, z, _ = trained
    assert len(z.config.task_types) >= 4
    for kind in z.config.task_types:
        light, heavy = z.model(kind, LIGHT), z.model(kind, HEAVY)
        assert type(light) is type(heavy)
        assert light.config.width == heavy.config.width and light.config.hidden == heavy.config.hidden
        assert light.config.depth < heavy.config.depth
        assert light(torch.zeros(2, 1, 28, 28)).shape == (2, tasks.task_type(kind).classes)


def test_second_call_loads_the_cached_weights(trained):
    cache, z, _ = trained
    assert z.trained
    again = zoo.load_or_train(TINY, cache)
    assert not again.trained
    for kind in TINY.task_types:
        for level in (LIGHT, HEAVY):
            a, b = z.model(kind, level).state_dict(), again.model(kind, level).state_dict()
            assert all(torch.equal(a[k], b[k]) for k in a)
    other = dataclasses.replace(TINY, seed=1)
    assert other.key() != TINY.key()


def test_cache_dir_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path))
    assert zoo.default_cache_dir() == str(tmp_path)
    monkeypatch.delenv(zoo.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert zoo.default_cache_dir() == str(tmp_path / "xdg" / "edgebed" / "placement")


def test_measured_accuracies_keep_the_papers_order(trained):
    """Table II: P_UL < P_UH, P_DL < P_DH, P_DL < P_UL and P_DH < P_UH, for every task type."""
    _, z, by_key = trained
    for kind in z.config.task_types:
        light, heavy = by_key[f"{kind}/light"], by_key[f"{kind}/heavy"]
        assert light.acc_clean < heavy.acc_clean, kind
        assert light.acc_noisy < heavy.acc_noisy, kind
        assert light.acc_noisy < light.acc_clean, kind
        assert heavy.acc_noisy < heavy.acc_clean, kind
        assert heavy.acc_clean > 1.5 / tasks.task_type(kind).classes, kind  # far above chance


def test_sizes_are_serialized_state_dict_bytes_and_heavy_is_larger(trained):
    _, z, by_key = trained
    for kind in z.config.task_types:
        net = z.model(kind, HEAVY)
        buf = io.BytesIO()
        torch.save(net.state_dict(), buf)
        assert by_key[f"{kind}/heavy"].size_bytes == len(buf.getvalue())
        assert by_key[f"{kind}/light"].size_bytes < by_key[f"{kind}/heavy"].size_bytes
        assert by_key[f"{kind}/heavy"].parameters * 4 < by_key[f"{kind}/heavy"].size_bytes
        assert by_key[f"{kind}/light"].infer_s > 0


def test_inference_time_is_a_median_of_real_calls():
    calls = []

    class Counting(torch.nn.Module):
        def forward(self, x):
            calls.append(1)
            return x

    assert measure.inference_time_s(Counting(), torch.zeros(1), warmup=2, repeats=5) >= 0.0
    assert len(calls) == 7
    with pytest.raises(ValueError):
        measure.inference_time_s(Counting(), torch.zeros(1), repeats=0)


def test_noise_model_is_gaussian_plus_salt_and_pepper_on_the_uint8_grid():
    clean = torch.full((200, 1, 28, 28), 0.5)
    noisy = tasks.add_noise(clean, tasks.generator(0))
    again = tasks.add_noise(clean, tasks.generator(0))
    assert torch.equal(noisy, again)
    assert torch.equal(noisy, torch.round(noisy * 255) / 255)
    extreme = ((noisy == 0) | (noisy == 1)).float().mean().item()
    # Salt and pepper hit SALT_PEPPER_P of the pixels; the rest reach 0 or 1 when the Gaussian clips
    # (|z| >= 0.5 from a 0.5 pixel).
    p = tasks.SALT_PEPPER_P
    clipped = math.erfc(0.5 / (tasks.NOISE_STD * math.sqrt(2)))
    assert extreme == pytest.approx(p + (1 - p) * clipped, rel=0.1)
    rest = noisy[(noisy > 0) & (noisy < 1)]
    assert 0.7 * tasks.NOISE_STD < rest.std().item() < tasks.NOISE_STD  # a clipped Gaussian


def test_task_inputs_carry_exactly_d_bytes_of_real_digits(trained):
    _, z, _ = trained
    kind = tasks.task_type("high")
    for d, noisy in ((40_000, False), (59_999, True)):
        t = tasks.make_task_input(kind, z.test_images, z.test_labels, d, noisy, tasks.generator(1))
        assert len(t.payload()) == d
        assert t.images.shape == (d // tasks.IMAGE_BYTES, 1, 28, 28)
        assert t.images.dtype == torch.uint8
        assert t.padding_bytes == d % tasks.IMAGE_BYTES
        assert set(t.labels.tolist()) <= {0, 1}
        assert t.model_input().max() <= 1.0
    with pytest.raises(ValueError):
        tasks.images_per_task(100)


def test_task_parameters_follow_section_v_a():
    d, t, noisy = tasks.draw_task_parameters(np.random.default_rng(0), 20_000)
    assert d.min() >= 40_000 and d.max() <= 60_000
    assert t.min() >= 1.5 and t.max() <= 2.0
    assert noisy.mean() == pytest.approx(0.3, abs=0.02)


def test_bad_configs_are_rejected():
    with pytest.raises(ValueError, match="shallower"):
        dataclasses.replace(TINY, light=TINY.heavy)
    with pytest.raises(ValueError, match="unknown task type"):
        dataclasses.replace(TINY, task_types=("digit", "nope"))


def test_transfer_tensors_carry_the_bytes_unchanged():
    from edgebed.models.placement.cache import bytes_tensor, tensor_bytes

    for blob in (b"", b"\x00\xff model bytes"):
        t = bytes_tensor(blob)
        assert t.dtype == torch.uint8 and t.dim() == 1 and t.numel() == len(blob)
        assert tensor_bytes(t) == blob
