"""Small chart helpers for suites: grouped bars and lines, rendered by Agg.

Figures are built with ``matplotlib.figure.Figure`` on an Agg canvas, never
through pyplot, so no GUI backend or global figure state is involved.
matplotlib is imported only when a chart is made. Save with
``RunWriter.plot(name, fig)``.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence


def _new_figure(width_in: float, height_in: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in))
    FigureCanvasAgg(fig)
    return fig


def _check_lengths(n: int, series: Mapping[str, Sequence[float | None]], what: str) -> None:
    for label, values in series.items():
        if len(values) != n:
            raise ValueError(
                f"series {label!r} has {len(values)} values but there are {n} {what}"
            )


def _values(values: Sequence[float | None]) -> list:
    return [float("nan") if v is None else float(v) for v in values]


def bar_chart(
    categories: Sequence[str],
    series: dict[str, Sequence[float | None]],
    ylabel: str,
    title: str,
) -> Any:
    """Grouped bars: one group per category, one bar per series (``None`` = no bar).

    A legend is shown when there is more than one series.
    """
    categories = [str(c) for c in categories]
    _check_lengths(len(categories), series, "categories")
    n = max(1, len(series))
    fig = _new_figure(min(14.0, max(4.0, 1.5 + 0.35 * len(categories) * n)), 3.5)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / n
    centers = list(range(len(categories)))
    for i, (label, values) in enumerate(series.items()):
        offset = (i - (n - 1) / 2.0) * width
        ax.bar([c + offset for c in centers], _values(values), width=width, label=label)
    ax.set_xticks(centers)
    ax.set_xticklabels(categories, rotation=30 if len(categories) > 6 else 0,
                       ha="right" if len(categories) > 6 else "center")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    if len(series) > 1:
        ax.legend()
    return fig


def line_chart(
    x: Sequence[float],
    series: dict[str, Sequence[float | None]],
    xlabel: str,
    ylabel: str,
    title: str,
    logx: bool = False,
) -> Any:
    """One line with markers per series over the shared ``x`` (``None`` = gap).

    ``logx`` puts the x axis on a log scale. A legend is shown when there is
    more than one series.
    """
    xs = [float(v) for v in x]
    _check_lengths(len(xs), series, "x values")
    if logx and any(v <= 0 for v in xs):
        raise ValueError("logx needs positive x values")
    fig = _new_figure(5.0, 3.5)
    ax = fig.add_subplot(1, 1, 1)
    for label, values in series.items():
        ax.plot(xs, _values(values), marker="o", markersize=3, label=label)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend()
    return fig
