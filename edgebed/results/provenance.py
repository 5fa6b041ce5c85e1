"""Provenance as data: every headline number carries where it came from.

A suite writes its summary from tagged values, and the ``provenance`` object
of ``summary.json`` is derived from the tags, never written beside them::

    writer.summary({
        "T_pred_s": modeled(solution.latency_s, "JUDBA, eq. 8"),
        "T_judba_s": measured(run.T_meas_s),
        "T_rel_error": derived(error, "measured vs modeled"),
        "model": given("alexnet"),
    })

The words are the spans' (``measured``, ``estimated``, ``modeled``) plus two
that only a summary needs: ``derived`` (computed from other figures, e.g. a
prediction error) and ``given`` (a setting or a decision's label, not a
figure). A value's note says which model or how, when the word alone would
not. Untagged values are refused: a summary cannot carry a number whose
provenance nobody stated.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterable, Mapping, Tuple

from edgebed.proto.records import PROVENANCES

SUMMARY_PROVENANCES = PROVENANCES + ("derived", "given")


@dataclass(frozen=True)
class Tagged:
    value: Any
    provenance: str
    note: str = ""

    def __post_init__(self) -> None:
        if self.provenance not in SUMMARY_PROVENANCES:
            raise ValueError(f"provenance {self.provenance!r} is not one of {SUMMARY_PROVENANCES}")

    @property
    def label(self) -> str:
        return f"{self.provenance}: {self.note}" if self.note else self.provenance


def measured(value: Any, note: str = "") -> Tagged:
    return Tagged(value, "measured", note)


def estimated(value: Any, note: str = "") -> Tagged:
    return Tagged(value, "estimated", note)


def modeled(value: Any, note: str = "") -> Tagged:
    return Tagged(value, "modeled", note)


def derived(value: Any, note: str = "") -> Tagged:
    return Tagged(value, "derived", note)


def given(value: Any, note: str = "") -> Tagged:
    return Tagged(value, "given", note)


def weakest(provenances: Iterable[str]) -> str:
    """The weakest of some spans' provenances (measured > estimated > modeled):
    a figure summed over devices is only as good as its weakest part."""
    words = set(provenances)
    if not words:
        raise ValueError("no provenances to weigh: a figure of no parts is not measured")
    for word in ("modeled", "estimated", "measured"):
        if word in words:
            return word
    raise ValueError(f"unknown provenance among {sorted(words)}")


def split_provenance(data: Mapping[str, Any]) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """(plain values, provenance by key) of a summary of tagged values.

    A value that is a mapping of tagged values is split the same way, its
    keys joined with dots (``by_scheme.all-local.pred_error``).
    """
    values: Dict[str, Any] = {}
    labels: Dict[str, str] = {}
    for key, item in data.items():
        if key == "provenance":
            raise ValueError("a summary's provenance is derived from its tagged values; "
                             "do not write it by hand")
        if isinstance(item, Tagged):
            values[key], labels[key] = item.value, item.label
        elif isinstance(item, Mapping) and item and all(
                isinstance(v, (Tagged, Mapping)) for v in item.values()):
            inner, inner_labels = split_provenance(item)
            values[key] = inner
            labels.update({f"{key}.{k}": v for k, v in inner_labels.items()})
        else:
            raise ValueError(f"summary key {key!r} has no provenance: tag its value with "
                             "measured(), estimated(), modeled(), derived() or given()")
    return values, labels
