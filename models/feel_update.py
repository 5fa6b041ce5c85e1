"""The model update of eq. (2) in paper 003, shared by devices and server.

w[n+1] = w[n] - eta g[n], computed as two separate tensor operations (a
multiply, then a subtract, each rounded once) so every node that applies the
same global gradient to the same weights gets the same bytes, whatever its
vector units: no fused multiply-add can differ between boards.
"""
import math

import torch


def scaled_lr(base_lr: float, global_batch: int, reference_batch: int) -> float:
    """Learning rate scaled with sqrt(B) (section III-A: eta = O(sqrt(B)))."""
    if global_batch < 1 or reference_batch < 1:
        raise ValueError(f"batch sizes must be positive, got {global_batch} and {reference_batch}")
    return base_lr * math.sqrt(global_batch / reference_batch)


def updated_weights(weights: torch.Tensor, grad: torch.Tensor, lr: float) -> torch.Tensor:
    if weights.shape != grad.shape:
        raise ValueError(f"gradient has {grad.numel()} elements, the model {weights.numel()}")
    step = grad.to(weights.dtype) * lr
    return weights - step
