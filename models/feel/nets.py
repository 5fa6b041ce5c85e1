"""Networks and flat-vector helpers for federated edge learning (paper 003).

Models (:func:`build_model`, names in :data:`MODEL_NAMES`), all randomly
initialized and deterministic given the torch seed:

- ``cnn``: a small CNN for MNIST (the default workload, MNIST-5k on
  1x28x28): two blocks of 5x5 convolution (32, 64 filters, "same" padding) +
  ReLU + 2x2 max-pooling, a 512-unit ReLU dense layer and a linear output
  (the "CNN" of McMahan et al.'s FedAvg paper, 1,663,370 parameters on
  MNIST). No BatchNorm and no dropout, so a gradient is a deterministic
  function of the weights and the batch.
- ``resnet18``, ``mobilenetv2``, ``densenet121``: the torchvision networks
  the paper trains on CIFAR-10 (section VI-A), with ``num_classes`` outputs.

Stem changes (paper 003 gives none; its parameter counts are those of the
1000-class ImageNet models). The ImageNet stems shrink a 32x32 image to 1x1
before the last stage, so for small inputs (both sides at most
:data:`SMALL_INPUT_MAX_SIDE`) the usual CIFAR adaptation is applied:

- ResNet18: ``conv1`` becomes 3x3 stride 1 padding 1 and ``maxpool`` is
  removed (total stride 8: 4x4 before the pooling head on CIFAR-10);
- MobileNetV2: the first convolution and the first stride-2 inverted
  residual (the 24-channel stage) get stride 1 (total stride 8);
- DenseNet121: ``conv0`` becomes 3x3 stride 1 padding 1 and ``pool0`` is
  removed (total stride 8).

Larger inputs keep the ImageNet stems. An input with other than 3 channels
gets a first convolution with that many input channels (same kernel and
stride). Replaced convolutions use torchvision's initialization for them.

Flat vectors (what a FEEL round moves): :func:`flat_parameters`,
:func:`set_flat_parameters`, :func:`flat_gradient`, :func:`compute_gradient`,
:func:`apply_global_gradient` and :func:`parameter_hash` (sha256 over the
exact bytes of every parameter and buffer, to prove that devices hold
bit-identical models).

BatchNorm in a gradient-averaging round. ResNet18, MobileNetV2 and
DenseNet121 contain BatchNorm. A local gradient must be computed in train
mode (batch statistics in the forward pass, as in centralized training),
and that forward pass also moves each device's running mean and variance
towards its own batch, so the buffers diverge across devices (strongly under
the non-IID split) and the models are no longer identical. edgebed's rule:

1. the server broadcasts the model (parameters and buffers); every device
   checks :func:`parameter_hash`;
2. each device runs :func:`compute_gradient` (train mode; its running stats
   move by one momentum step) and uploads the flat gradient and, if
   :func:`has_batchnorm`, :func:`flat_buffers` (float buffers only, small:
   about 0.1 % of ResNet18's parameters);
3. the server averages the gradients with weights ``B_k / B`` (eq. (1)) and
   the float buffers with the same weights. With identical weights the
   layer inputs are computed by the same function, so averaging the
   updated running means gives exactly the running-mean update for the
   union batch; the running variance average omits the between-device
   spread of the means (the usual FedAvg treatment of BN buffers);
   ``num_batches_tracked`` is the same on every device and is not sent;
4. every device applies :func:`apply_global_gradient` and
   :func:`set_flat_buffers` with the averaged vectors, so all devices again
   hold bit-identical parameters and buffers.

``compute_gradient(..., keep_buffers=True)`` restores the buffers after the
pass instead (batch statistics are still used in the forward pass), for
callers that do not aggregate buffers, e.g. latency profiling; running stats
then never change, so evaluate such a model in train mode or recompute them.
"""
from __future__ import annotations

import hashlib
import inspect
import math
import logging
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

MODEL_NAMES = ("cnn", "lenet", "resnet18", "mobilenetv2", "densenet121")
#: Inputs with both sides at most this get the CIFAR stems described above.
SMALL_INPUT_MAX_SIDE = 64
MIN_SIDE = {"cnn": 4, "lenet": 16, "resnet18": 8, "mobilenetv2": 8, "densenet121": 8}
#: Default input shape of each model: MNIST for the CNN, CIFAR-10 for the rest.
DEFAULT_IN_SHAPES = {"cnn": (1, 28, 28), "lenet": (1, 28, 28), "resnet18": (3, 32, 32),
                     "mobilenetv2": (3, 32, 32),
                     "densenet121": (3, 32, 32)}


class SmallCNN(nn.Module):
    """conv5x5(32)-ReLU-pool, conv5x5(64)-ReLU-pool, dense(512)-ReLU, dense(num_classes)."""

    def __init__(self, in_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10,
                 widths: Tuple[int, int] = (32, 64), hidden: int = 512) -> None:
        super().__init__()
        c, h, w = (int(v) for v in in_shape)
        self.in_shape = (c, h, w)
        self.features = nn.Sequential(
            nn.Conv2d(c, widths[0], 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(widths[0], widths[1], 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(widths[1] * (h // 4) * (w // 4), hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class LeNet(nn.Module):
    """LeNet-5 shape: conv5x5(6)-pool, conv5x5(16)-pool, dense 120, 84, classes.

    About 62k parameters on MNIST: a model whose rounds take tenths of a
    second on an emulated quarter-core device, for quick runs and tests.
    """

    def __init__(self, in_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10) -> None:
        super().__init__()
        c, h, w = (int(v) for v in in_shape)
        self.features = nn.Sequential(
            nn.Conv2d(c, 6, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2))
        side_h, side_w = (h // 2 - 4) // 2, (w // 2 - 4) // 2
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * side_h * side_w, 120), nn.ReLU(inplace=True),
            nn.Linear(120, 84), nn.ReLU(inplace=True), nn.Linear(84, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def torchvision_model(name: str, **kwargs) -> nn.Module:
    """``torchvision.models.<name>(**kwargs)`` randomly initialized on any torchvision >= 0.11.

    torchvision 0.13 replaced ``pretrained=False`` by ``weights=None`` (and
    later dropped ``pretrained``); the constructor's signature says which.
    """
    import torchvision.models as tvm

    ctor: Callable[..., nn.Module] = getattr(tvm, name)
    try:
        params = inspect.signature(ctor).parameters
    except (TypeError, ValueError):  # pragma: no cover - signature not introspectable
        params = {}
    if "weights" in params:
        kwargs["weights"] = None
    elif "pretrained" in params:
        kwargs["pretrained"] = False
    return ctor(**kwargs)


def _conv_like(old: nn.Conv2d, in_channels: int, kernel: Optional[int] = None,
               stride: Optional[int] = None, fan_out: bool = False) -> nn.Conv2d:
    """A fresh convolution replacing ``old`` (kaiming-normal init, as torchvision's)."""
    k = old.kernel_size[0] if kernel is None else kernel
    s = old.stride[0] if stride is None else stride
    conv = nn.Conv2d(in_channels, old.out_channels, k, stride=s, padding=k // 2,
                     bias=old.bias is not None)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out" if fan_out else "fan_in",
                            nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def _unstride(module: nn.Module) -> None:
    """Set the stride of every stride-2 convolution inside ``module`` to 1."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and m.stride == (2, 2):
            m.stride = (1, 1)
    if getattr(module, "stride", None) == 2:  # InvertedResidual keeps its stride too
        module.stride = 1


def _adapt_resnet18(model: nn.Module, c: int, small: bool) -> nn.Module:
    if small:
        model.conv1 = _conv_like(model.conv1, c, kernel=3, stride=1, fan_out=True)
        model.maxpool = nn.Identity()
    elif c != 3:
        model.conv1 = _conv_like(model.conv1, c, fan_out=True)
    return model


def _adapt_mobilenetv2(model: nn.Module, c: int, small: bool) -> nn.Module:
    stem = model.features[0]
    if c != 3:
        stem[0] = _conv_like(stem[0], c, fan_out=True)
    if small:
        _unstride(stem)
        first = next(i for i in range(1, len(model.features))
                     if any(isinstance(m, nn.Conv2d) and m.stride == (2, 2)
                            for m in model.features[i].modules()))
        _unstride(model.features[first])
    return model


def _adapt_densenet121(model: nn.Module, c: int, small: bool) -> nn.Module:
    if small:
        model.features.conv0 = _conv_like(model.features.conv0, c, kernel=3, stride=1)
        model.features.pool0 = nn.Identity()
    elif c != 3:
        model.features.conv0 = _conv_like(model.features.conv0, c)
    return model


_TORCHVISION = {"resnet18": ("resnet18", _adapt_resnet18),
                "mobilenetv2": ("mobilenet_v2", _adapt_mobilenetv2),
                "densenet121": ("densenet121", _adapt_densenet121)}


def build_model(name: str, num_classes: int = 10, in_shape: Sequence[int] = (1, 28, 28)) -> nn.Module:
    """Model ``name`` (one of :data:`MODEL_NAMES`) for ``in_shape`` (C, H, W) inputs.

    Random initialization from the global torch RNG (seed it for repeatable
    weights). Stems are adapted to small inputs as in the module docstring.
    """
    key = name.lower().replace("-", "").replace("_", "")
    if key not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; one of {MODEL_NAMES}")
    shape = tuple(int(v) for v in in_shape)
    if len(shape) != 3 or any(v < 1 for v in shape):
        raise ValueError(f"in_shape must be (channels, height, width) of positive ints, got {in_shape!r}")
    if min(shape[1:]) < MIN_SIDE[key]:
        raise ValueError(f"{key} needs images of at least {MIN_SIDE[key]}x{MIN_SIDE[key]}, "
                         f"got {shape[1]}x{shape[2]}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if key == "cnn":
        return SmallCNN(shape, num_classes)
    if key == "lenet":
        return LeNet(shape, num_classes)
    ctor_name, adapt = _TORCHVISION[key]
    small = max(shape[1:]) <= SMALL_INPUT_MAX_SIDE
    model = adapt(torchvision_model(ctor_name, num_classes=num_classes), shape[0], small)
    logger.debug("built %s for %s (%s stem)", key, shape, "small-input" if small else "ImageNet")
    return model


def num_parameters(model: nn.Module) -> int:
    """All parameters (the paper's p: one gradient element each)."""
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- flat vectors


def _flatten(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    if not tensors:
        return torch.zeros(0, dtype=torch.float32)
    return torch.cat([t.detach().reshape(-1).to(torch.float32) for t in tensors])


def _assign(tensors: Sequence[torch.Tensor], vec: torch.Tensor, what: str) -> None:
    total = sum(t.numel() for t in tensors)
    if not isinstance(vec, torch.Tensor) or vec.dim() != 1 or vec.numel() != total:
        shape = tuple(vec.shape) if isinstance(vec, torch.Tensor) else type(vec).__name__
        raise ValueError(f"{what} vector must be one-dimensional with {total} elements, got {shape}")
    if not vec.is_floating_point():
        raise ValueError(f"{what} vector must be floating point, got {vec.dtype}")
    offset = 0
    with torch.no_grad():
        for t in tensors:
            n = t.numel()
            t.copy_(vec[offset:offset + n].view_as(t))
            offset += n


def flat_parameters(model: nn.Module) -> torch.Tensor:
    """All parameters, in ``model.parameters()`` order, as one float32 vector (a copy)."""
    return _flatten(list(model.parameters()))


def set_flat_parameters(model: nn.Module, vec: torch.Tensor) -> None:
    """Copy ``vec`` (as from :func:`flat_parameters`) into the parameters, in place."""
    _assign(list(model.parameters()), vec, "parameter")


def flat_gradient(model: nn.Module) -> torch.Tensor:
    """The gradients in parameter order as one float32 vector (zeros where ``grad`` is None)."""
    return _flatten([p.grad if p.grad is not None else torch.zeros_like(p)
                     for p in model.parameters()])


def float_buffers(model: nn.Module) -> List[torch.Tensor]:
    """The floating-point buffers (BatchNorm running mean and variance), in module order."""
    return [b for b in model.buffers() if b.is_floating_point()]


def has_batchnorm(model: nn.Module) -> bool:
    """True if the model tracks running statistics that a FEEL round must aggregate."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
               for m in model.modules())


def flat_buffers(model: nn.Module) -> torch.Tensor:
    """The float buffers as one float32 vector (integer counters are left out)."""
    return _flatten(float_buffers(model))


def set_flat_buffers(model: nn.Module, vec: torch.Tensor) -> None:
    """Copy ``vec`` (as from :func:`flat_buffers`) into the float buffers, in place."""
    _assign(float_buffers(model), vec, "buffer")


def parameter_hash(model: nn.Module) -> str:
    """sha256 hex digest of every parameter and buffer: name, dtype, shape and exact bytes,
    in ``state_dict`` order. Equal digests mean bit-identical models."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict(keep_vars=False).items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode("utf-8"))
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def compute_gradient(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                     keep_buffers: bool = False) -> Tuple[torch.Tensor, float]:
    """One local gradient (step 1 of a round): ``(flat float32 gradient, mean loss)``.

    Cross-entropy averaged over the batch, the model in train mode, gradients
    zeroed first. BatchNorm running stats are updated (see the module
    docstring) unless ``keep_buffers``, which restores them afterwards.
    """
    if images.dim() < 2 or labels.dim() != 1 or images.shape[0] != labels.shape[0] \
            or labels.shape[0] == 0:
        raise ValueError(f"need a non-empty batch with one label per image, got images "
                         f"{tuple(images.shape)} and labels {tuple(labels.shape)}")
    device = _model_device(model)
    saved: Optional[Dict[int, torch.Tensor]] = None
    if keep_buffers:
        saved = {i: b.detach().clone() for i, b in enumerate(model.buffers())}
    model.train()
    model.zero_grad(set_to_none=False)
    loss = F.cross_entropy(model(images.to(device)), labels.to(device).long())
    loss.backward()
    if saved is not None:
        with torch.no_grad():
            for i, b in enumerate(model.buffers()):
                b.copy_(saved[i])
    return flat_gradient(model), float(loss.item())


def scaled_lr(base_lr: float, global_batch: int, reference_batch: int) -> float:
    """Learning rate scaled with sqrt(B) (paper 003, section III-A: eta = O(sqrt(B)))."""
    if global_batch < 1 or reference_batch < 1:
        raise ValueError(f"batch sizes must be positive, got {global_batch} and {reference_batch}")
    return base_lr * math.sqrt(global_batch / reference_batch)


def apply_global_gradient(model: nn.Module, gradient: torch.Tensor, lr: float) -> None:
    """Step 5 (eq. (2)): ``w <- w - lr * g``, bit-reproducibly on every device.

    Done as two separately rounded IEEE float32 operations (``step = lr * g``,
    then ``w - step``), so no fused multiply-add makes devices of different
    architectures disagree in the last bit. Model-based FEEL passes the mean
    model delta with ``lr = -1`` (w + delta), so any finite non-zero lr is allowed.
    """
    if not (math.isfinite(lr) and lr != 0):
        raise ValueError(f"learning rate must be finite and non-zero, got {lr!r}")
    params = flat_parameters(model)
    if not isinstance(gradient, torch.Tensor) or gradient.shape != params.shape:
        shape = tuple(gradient.shape) if isinstance(gradient, torch.Tensor) else type(gradient).__name__
        raise ValueError(f"gradient must have shape {tuple(params.shape)}, got {shape}")
    step = gradient.detach().to(device=params.device, dtype=torch.float32) * torch.tensor(
        lr, dtype=torch.float32)
    set_flat_parameters(model, params - step)
