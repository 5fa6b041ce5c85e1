"""Operation counts of a network, for the solvers' "cycles per sample" terms.

Papers 000 and 003 model compute time as (operations per sample) / (device
speed). edgebed counts multiply-accumulates of the convolution and linear
layers with forward hooks on one real forward pass (other layers are cheap
next to them), and measures the device speed, so the two stay consistent.
"""
from typing import Callable, List, Optional, Sequence

import torch
from torch import nn


def count_macs(model: nn.Module, input_shape: Sequence[int],
               forward: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> int:
    """Multiply-accumulates of one sample of ``input_shape`` (C, H, W).

    ``forward`` runs only part of ``model`` (e.g. ``autoencoder.encode``).
    """
    total: List[int] = []

    def conv_hook(module: nn.Module, inputs, output: torch.Tensor) -> None:
        kernel = 1
        for k in module.kernel_size:
            kernel *= k
        if isinstance(module, nn.ConvTranspose2d):
            # Each input element is spread over kernel x out_channels outputs.
            total.append(inputs[0][0].numel() * kernel * module.out_channels // module.groups)
        else:
            total.append(output[0].numel() * kernel * module.in_channels // module.groups)

    def linear_hook(module: nn.Module, inputs, output: torch.Tensor) -> None:
        total.append(output[0].numel() * module.in_features)

    handles = []
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            (forward or model)(torch.zeros((1,) + tuple(input_shape)))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return int(sum(total))
