"""What a split-inference request must be before the server runs anything (paper 004).

A device announces in the Infer meta (the contract's ``InferMeta``) its
``model`` with its ``seed`` and ``input_size``, its split point ``split``
(eq. 18) and, unless the server already holds its decided strategy, the
``slots`` of its offloaded layers (eq. 14). :func:`parse_request` checks all
of it and the activation's shape; every failure is a ``RequestError``
naming the problem, which the client gets as INVALID_ARGUMENT.
"""
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Tuple

import torch

from edgebed.models.split.nets import SplitModel
from edgebed.proto.contracts.base import ContractError
from edgebed.proto.contracts.split import InferMeta
from edgebed.server.errors import RequestError
from edgebed.server.transfers import ReceivedTransfer
RELEASES = ("slot_end", "asap")
ModelLookup = Callable[[str, Optional[int], Optional[int]], SplitModel]


def _shape_str(shape) -> str:
    return "x".join(str(int(v)) for v in shape)


@dataclass(frozen=True)
class SlotConfig:
    """The server's slot model (section 3.1) and parallel limit B (eq. 27)."""

    slots_h: int = 5           # H
    t_d_s: float = 0.75        # T_d
    parallel_limit: int = 4    # B
    release: str = "slot_end"  # when a result leaves: end of slot h_max (eq. 24) or at once

    def __post_init__(self) -> None:
        if self.slots_h < 1:
            raise ValueError(f"need at least one slot, got H={self.slots_h}")
        if not self.t_d_s > 0:
            raise ValueError(f"T_d must be positive, got {self.t_d_s}")
        if self.parallel_limit < 1:
            raise ValueError(f"the parallel limit B must be >= 1, got {self.parallel_limit}")
        if self.release not in RELEASES:
            raise ValueError(f"release must be one of {RELEASES}, got {self.release!r}")

    @property
    def slot_s(self) -> float:
        return self.t_d_s / self.slots_h


@dataclass(frozen=True)
class TailPlan:
    """What the orchestrator decided for one device (its strategy y_n, eq. 14)."""

    model: str
    split: int
    slots: Tuple[int, ...]


@dataclass(frozen=True)
class TailRequest:
    device: str
    key: str
    run_id: str
    tag: str
    model: SplitModel
    split: int
    slots: Tuple[int, ...]
    x: torch.Tensor


def check_slots(model: SplitModel, split: int, slots: Tuple[int, ...], slots_h: int) -> None:
    """An offload split (0..M-1) and one slot in 1..H per offloaded layer, never
    decreasing (Rule 2, eq. 16)."""
    model.check_split(split)
    if split >= model.num_layers:
        raise ValueError(f"split {split} of {model.name} runs all {model.num_layers} layers on "
                         f"the device: nothing to offload (offload splits are "
                         f"0..{model.num_layers - 1})")
    need = model.num_layers - split
    if len(slots) != need:
        raise ValueError(f"split {split} of {model.name} offloads {need} layers, got "
                         f"{len(slots)} slots")
    if any(not 1 <= s <= slots_h for s in slots):
        raise ValueError(f"slots {list(slots)} must lie in 1..{slots_h}")
    if any(b < a for a, b in zip(slots, slots[1:])):
        raise ValueError(f"slots {list(slots)} must not decrease (Rule 2, eq. 16)")


def parse_request(received: ReceivedTransfer, lookup: ModelLookup, plans: Mapping[str, TailPlan],
                  slots_h: int, run_id: str, handler: str) -> TailRequest:
    """The validated request of run ``run_id`` (served by ``handler``), or RequestError
    naming what is wrong (nothing has run, and no model was looked up for another run)."""
    try:
        meta = InferMeta.from_meta(received.meta, "split request meta", ignore=("handler",))
    except ContractError as exc:
        raise RequestError(str(exc)) from None
    if meta.run_id != run_id:
        raise RequestError(f"a request of run {meta.run_id!r} sent to {handler!r}, the handler "
                           f"of run {run_id!r}")
    try:
        # An unknown model or a split out of range (checks that name 0..M).
        model = lookup(meta.model, meta.seed, meta.input_size)
        model.check_split(meta.split)
    except ValueError as exc:
        raise RequestError(str(exc)) from None
    plan = plans.get(received.device)
    if plan is not None:
        if (plan.model, plan.split) != (model.name, meta.split):
            raise RequestError(f"{received.device} announced {model.name} split {meta.split}, "
                               f"its decided strategy is {plan.model} split {plan.split}")
        slots = plan.slots
    else:
        slots = meta.slots or (1,) * max(0, model.num_layers - meta.split)
    try:
        check_slots(model, meta.split, slots, slots_h)
    except ValueError as exc:
        raise RequestError(str(exc)) from None
    if set(received.tensors) != {"x"}:
        raise RequestError(f"a split request carries one tensor 'x', got {sorted(received.tensors)}")
    x = received.tensors["x"]
    want = model.activation_shape(meta.split)
    if x.dim() != len(want) + 1 or tuple(x.shape[1:]) != want:
        raise RequestError(f"activation of shape {_shape_str(x.shape)} does not match split "
                           f"{meta.split} of {model.name}, which expects N x {_shape_str(want)}")
    if x.dtype != torch.float32:
        raise RequestError(f"activation must be float32, got {x.dtype}")
    return TailRequest(received.device, received.key, meta.run_id, meta.tag, model, meta.split,
                       slots, x)
