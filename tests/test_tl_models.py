"""Paper 000 models: exact-ratio autoencoder, edge CNN, datasets, partitioning (edgebed.models)."""
import math

import pytest
import torch
from torch import nn

from edgebed.models.tl.autoencoder import (PAPER_LAMBDAS, ConvAutoencoder, encode_all, latent_layout,
                                        train_autoencoder)
from edgebed.models.datasets import DatasetNotFoundError, load_dataset, load_mnist5k
from edgebed.models.tl.edge_cnn import (EdgeCNN, augment, count_parameters, evaluate,
                                     train_classifier)
from edgebed.models.partition import (partition, partition_iid, partition_noniid,
                                      train_test_split)

SHAPES = [(1, 28, 28), (3, 32, 32), (3, 64, 96), (3, 256, 256)]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# --------------------------------------------------------------------------- autoencoder


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("lam", PAPER_LAMBDAS)
def test_latent_has_exactly_one_lambda_th_of_padded_input(shape, lam):
    _, latent = latent_layout(shape, lam)
    c, h, w = shape
    padded = c * math.ceil(h / 8) * 8 * math.ceil(w / 8) * 8
    assert math.prod(latent) * lam == padded
    if h % 8 == 0 and w % 8 == 0:  # no padding: lambda is the plain ratio to the image
        assert math.prod(latent) * lam == c * h * w


def test_mnist_is_padded_to_32x32():
    ae = ConvAutoencoder((1, 28, 28), 32)
    assert ae.padded_shape == (1, 32, 32)
    assert ae.reference_numel == 1024 and ae.latent_numel == 32
    assert ae.raw_ratio == pytest.approx(784 / 32)


@pytest.mark.parametrize("shape", SHAPES[:3])
@pytest.mark.parametrize("lam", PAPER_LAMBDAS)
def test_encode_decode_round_trip_shapes(shape, lam):
    ae = ConvAutoencoder(shape, lam, width=4)
    x = torch.rand((2,) + shape)
    z = ae.encode(x)
    assert tuple(z.shape) == (2,) + ae.latent_shape
    assert z.numel() == 2 * ae.reference_numel // lam
    assert tuple(ae.decode(z).shape) == (2,) + shape
    assert tuple(ae(x).shape) == (2,) + shape


def test_paper_size_images_shape_only():
    ae = ConvAutoencoder((3, 256, 256), 32, width=4)
    assert ae.latent_shape == (6, 32, 32)
    with torch.no_grad():
        z = ae.encode(torch.rand(1, 3, 256, 256))
    assert z.numel() * 32 == 3 * 256 * 256


def test_glorot_uniform_init():
    ae = ConvAutoencoder((3, 32, 32), 8, width=8)
    convs = [m for m in ae.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert convs
    for m in convs:
        fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(m.weight)
        weight = m.weight.detach()
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        assert float(weight.abs().max()) <= bound + 1e-6
        assert float(weight.abs().max()) > 0.5 * bound  # uniform over the whole range
        assert float(m.bias.detach().abs().max()) == 0.0


@pytest.mark.parametrize("bad", [0, 3, -4, 1.5, True, 128 * 3])
def test_bad_lambda_raises(bad):
    with pytest.raises(ValueError):
        ConvAutoencoder((1, 28, 28), bad)


def test_wrong_input_shape_raises():
    ae = ConvAutoencoder((1, 28, 28), 4, width=4)
    with pytest.raises(ValueError, match="input"):
        ae.encode(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match="latent"):
        ae.decode(torch.rand(2, 3, 16, 16))


def test_autoencoder_training_reduces_mse():
    x = torch.rand(32, 1, 28, 28)
    ae = ConvAutoencoder((1, 28, 28), 16, width=4)
    losses = train_autoencoder(ae, x, epochs=3, lr=1e-3, batch_size=16, seed=0)
    assert len(losses) == 3 and losses[-1] < losses[0]
    loader = [(x[:16], None), (x[16:], None)]  # a loader yielding (images, labels)
    assert len(train_autoencoder(ae, loader, epochs=1)) == 1
    assert tuple(encode_all(ae, x, batch_size=10).shape) == (32,) + ae.latent_shape


# --------------------------------------------------------------------------- edge CNN


@pytest.mark.parametrize("shape", [(1, 28, 28)] + [latent_layout(s, lam)[1] for s in SHAPES[:3]
                                                   for lam in PAPER_LAMBDAS[1:]])
def test_edge_cnn_forward_on_every_latent_shape(shape):
    model = EdgeCNN(shape, 10)
    out = model(torch.randn((3,) + tuple(shape)))
    assert tuple(out.shape) == (3, 10)


def test_edge_cnn_is_smaller_for_smaller_latents():
    sizes = [count_parameters(EdgeCNN(latent_layout((1, 28, 28), lam)[1], 10))
             for lam in (4, 16, 64)]
    assert sizes[0] > sizes[1] > sizes[2] > 0
    assert count_parameters(EdgeCNN((1, 28, 28), 10)) > sizes[0]


def test_augment_translates_each_sample_by_a_window_of_the_replicated_input():
    x = torch.arange(3 * 2 * 10 * 10, dtype=torch.float32).view(3, 2, 10, 10)
    assert torch.equal(augment(x, 0, 0.0, torch.ones(1, 2, 1, 1)), x)
    out = augment(x, 2, 0.0, torch.ones(1, 2, 1, 1), torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="replicate")
    for i in range(3):
        windows = [padded[i, :, dy:dy + 10, dx:dx + 10] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)
    noisy = augment(x, 0, 0.1, torch.ones(1, 2, 1, 1))
    assert 0.0 < float((noisy - x).std()) < 0.2


def test_classifier_learns_a_separable_toy_task():
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(64) % 2
    x = torch.randn(64, 2, 4, 4, generator=gen) * 0.1 + labels.view(-1, 1, 1, 1).float() * 3.0
    model = EdgeCNN((2, 4, 4), 2)
    losses = train_classifier(model, x, labels, epochs=4, batch_size=16, seed=0)
    assert len(losses) == 4
    accuracy, seconds = evaluate(model, x, labels)
    assert accuracy >= 0.9 and seconds >= 0.0
    with pytest.raises(ValueError):
        train_classifier(model, x, torch.full((64,), 5), epochs=1)


# --------------------------------------------------------------------------- partition


def test_iid_partition_disjoint_and_covering():
    parts = partition_iid(103, 4, seed=1)
    allidx = torch.cat(parts)
    assert sorted(allidx.tolist()) == list(range(103))
    assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 1


def test_noniid_shards_give_few_labels_per_device():
    labels = torch.arange(1000) % 10
    parts = partition_noniid(labels, 10, shards_per_device=2, seed=0)
    assert sorted(torch.cat(parts).tolist()) == list(range(1000))
    for p in parts:
        assert len(set(labels[p].tolist())) <= 2
    iid = partition_iid(1000, 10, seed=0)
    assert all(len(set(labels[p].tolist())) == 10 for p in iid)


def test_seven_three_split_per_device():
    labels = torch.arange(5000) % 10
    splits = partition(labels, 5, "noniid", seed=3)
    seen = []
    for s in splits:
        n = len(s.train) + len(s.test)
        assert len(s.train) == round(0.7 * n)
        assert not set(s.train.tolist()) & set(s.test.tolist())
        seen += s.indices.tolist()
    assert sorted(seen) == list(range(5000))
    one = partition(labels, 1)[0]
    assert (len(one.train), len(one.test)) == (3500, 1500)
    assert partition(labels, 5, seed=3)[0].train.tolist() == partition(labels, 5, seed=3)[0].train.tolist()


@pytest.mark.parametrize("kwargs, word", [
    ({"num_devices": 0}, "num_devices"),
    ({"num_devices": 11}, "exceeds"),
    ({"num_devices": 2, "scheme": "dirichlet"}, "scheme"),
    ({"num_devices": 4, "scheme": "noniid", "shards_per_device": 3}, "shards"),
    ({"num_devices": 2, "scheme": "noniid", "shards_per_device": 0}, "shards_per_device"),
    ({"num_devices": 2, "train_fraction": 1.0}, "train_fraction"),
])
def test_bad_partition_inputs_raise(kwargs, word):
    with pytest.raises(ValueError, match=word):
        partition(torch.arange(10) % 2, **kwargs)


def test_bad_labels_raise():
    with pytest.raises(ValueError, match="one-dimensional"):
        partition(torch.zeros(2, 2, dtype=torch.long), 1)
    with pytest.raises(ValueError, match="empty"):
        partition(torch.zeros(0, dtype=torch.long), 1)
    with pytest.raises(ValueError, match="integers"):
        partition(torch.rand(10), 1)
    with pytest.raises(ValueError, match="train_fraction"):
        train_test_split(torch.arange(10), 0.0)


# --------------------------------------------------------------------------- datasets


def test_mnist5k_loader():
    images, labels = load_mnist5k()
    assert tuple(images.shape) == (5000, 1, 28, 28) and images.dtype == torch.float32
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert labels.dtype == torch.int64
    assert labels.bincount().tolist() == [500] * 10


def test_missing_root_names_the_path(tmp_path):
    missing = tmp_path / "no-such-dir"
    with pytest.raises(DatasetNotFoundError, match="no-such-dir"):
        load_dataset("cifar10", str(missing))
    with pytest.raises(DatasetNotFoundError, match="cifar10"):
        load_dataset("cifar10", str(tmp_path))  # exists but holds no CIFAR files
    with pytest.raises(ValueError, match="root"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("svhn", str(tmp_path))


def test_image_folder_loader(tmp_path):
    from PIL import Image

    for cls, color in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.new("RGB", (20, 12), color).save(tmp_path / cls / f"{i}.png")
    images, labels = load_dataset("folder", str(tmp_path), image_size=8)
    assert tuple(images.shape) == (6, 3, 8, 8) and labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert float(images[0, 0].mean()) == pytest.approx(1.0) and float(images[5, 2].mean()) == 1.0
    images, labels = load_dataset("folder", str(tmp_path), image_size=8, max_samples=4, seed=1)
    assert len(images) == len(labels) == 4
