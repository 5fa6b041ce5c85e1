"""Layer delay prediction model of paper 004, section 2.2.1 (eqs. 1-7): numpy, and scipy to fit.

Eq. (5) predicts a layer's computation delay from its output side G, kernel
side K, input channels O and output channels I as a polynomial in G^2, K^2,
O and I with one coefficient per product of a subset of them: 16 terms, from
``G2K2OI`` down to the constant ``1`` (:data:`TERMS`).

Fit (per layer kind, per host): the paper uses least squares and then keeps
three terms (eqs. 6, 7). Here:

1. Non-negative least squares (Lawson-Hanson, :func:`nnls`): every term is a
   cost that grows with the layer, so a negative coefficient is unphysical;
   with sixteen strongly correlated columns plain least squares cancels large
   terms against each other and predicts negative delays outside the sweep.
2. Relative errors above a floor: each row is weighted by
   1 / max(measured delay, ``floor_s``), i.e. the fit minimizes
   sum(((y - y_hat) / max(y, floor_s))^2). Layer delays span five orders of
   magnitude (a ReLU on a vector: microseconds; a VGG convolution: tens of
   milliseconds); an unweighted fit only sees the largest rows and leaves the
   small ones off by orders of magnitude, while a purely relative fit lets
   the many sub-millisecond rows pull the coefficients that the big layers
   (which dominate every split decision and the R^2) depend on. Below the
   floor (default 1 ms: link, queueing and split-decision delays are
   milliseconds) errors count in absolute terms, so a 50 us error on a 100 us
   layer costs as little as it matters. The price: layers far below the
   floor (all of LeNet's, 0.3 ms in total) are predicted less well in relative
   terms. ``floor_s=0`` gives a purely relative fit, ``floor_s=inf`` the
   paper's plain least squares. Columns are scaled to unit norm before
   solving (the coefficients are scaled back).
3. Pruning as in eqs. (6)-(7), by backward elimination: starting from the
   terms NNLS kept, repeatedly drop the term whose removal leaves the lowest
   ``folds``-fold cross-validated weighted RMS error, as long as that
   error does not exceed the best seen by more than ``tol`` (default 0: a term
   goes only if the model predicts unseen rows at least as well without it;
   a looser tolerance gives shorter formulas like the paper's three terms, but
   they predicted real networks' layers worse in our sweeps).

Layer kinds (see :mod:`edgebed.models.split.nets`): ``conv``, ``dwconv``
(depthwise: O = I = channels), ``fc`` (G = K = 1, so eq. (5) reduces to
``OI, O, I, 1``) and the cheap kinds ``relu``, ``norm``, ``pool``, ``dropout``,
``flatten``, ``add`` each get their own eq. (5) fit. For those, O = I =
channels (vectors: features) and K is the pooling window (1 otherwise); the
terms with I then repeat those with O or square the channel count, so they
are left out, and eq. (5) reduces to a linear model in the output elements
G^2 O, the window reads G^2 K^2 O, the other products of G^2, K^2 and O and a
constant per-call overhead; backward elimination keeps only what the data
supports. A composite layer (``block``: residual block,
ConvBNReLU, pooling + flatten) is predicted as the sum of its ``parts``.

:func:`r2_score` and :func:`mean_abs_error` follow the paper's footnote 1
(R-square on the test set, average absolute error).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from edgebed.models.split.nets import LayerInfo

logger = logging.getLogger(__name__)

#: The 16 terms of eq. (5) as exponent flags of (G^2, K^2, O, I), in the paper's order.
TERM_FLAGS: Tuple[Tuple[int, int, int, int], ...] = (
    (1, 1, 1, 1), (1, 1, 0, 1), (1, 1, 1, 0), (0, 1, 1, 1),
    (1, 0, 1, 1), (1, 1, 0, 0), (1, 0, 1, 0), (1, 0, 0, 1),
    (0, 1, 1, 0), (0, 1, 0, 1), (0, 0, 1, 1), (1, 0, 0, 0),
    (0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1), (0, 0, 0, 0))


def _term_name(flags: Tuple[int, int, int, int]) -> str:
    name = "".join(s for s, f in zip(("G2", "K2", "O", "I"), flags) if f)
    return name or "1"


TERMS: Tuple[str, ...] = tuple(_term_name(f) for f in TERM_FLAGS)
_FLAGS = dict(zip(TERMS, TERM_FLAGS))
#: Rows faster than this count in the fit as if they took this long (see the module docstring).
WEIGHT_FLOOR_S = 1e-3
#: Cross-validated errors closer than this (relative RMS) count as equal when pruning.
CV_EPS = 1e-6
#: Kinds with no fit of their own: predicted as the sum of their parts.
COMPOSITE_KINDS = ("block",)


def design_matrix(G, K, O, I, terms: Sequence[str] = TERMS) -> np.ndarray:  # noqa: E741 - paper's names
    """Rows of eq. (5)'s monomials for arrays of factors: shape (n, len(terms))."""
    f = [np.asarray(v, dtype=float).reshape(-1) for v in (G, K, O, I)]
    if len({a.size for a in f}) != 1:
        raise ValueError(f"G, K, O and I need equal lengths, got {[a.size for a in f]}")
    base = (f[0] ** 2, f[1] ** 2, f[2], f[3])
    cols = []
    for t in terms:
        if t not in _FLAGS:
            raise ValueError(f"unknown term {t!r}; eq. (5) terms are {', '.join(TERMS)}")
        col = np.ones_like(f[0])
        for b, on in zip(base, _FLAGS[t]):
            if on:
                col = col * b
        cols.append(col)
    return np.stack(cols, axis=1) if cols else np.zeros((f[0].size, 0))


def r2_score(y, y_hat) -> float:
    """Paper 004 footnote 1: 1 - sum (y - y_hat)^2 / sum (y - mean y)^2."""
    y, y_hat = np.asarray(y, float).reshape(-1), np.asarray(y_hat, float).reshape(-1)
    if y.size != y_hat.size or y.size < 2:
        raise ValueError(f"R^2 needs two equal-length arrays of >= 2 values, got {y.size} and {y_hat.size}")
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    if ss_tot == 0.0:
        raise ValueError("R^2 is undefined when every measured value is the same")
    return 1.0 - float(np.sum((y - y_hat) ** 2)) / ss_tot


def mean_abs_error(y, y_hat) -> float:
    """Paper 004 footnote 1: (1/D) sum |y - y_hat| (same unit as y)."""
    y, y_hat = np.asarray(y, float).reshape(-1), np.asarray(y_hat, float).reshape(-1)
    if y.size != y_hat.size or y.size < 1:
        raise ValueError(f"MAE needs two equal-length non-empty arrays, got {y.size} and {y_hat.size}")
    return float(np.mean(np.abs(y - y_hat)))


def nnls(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Non-negative least squares, argmin ||A x - b|| subject to x >= 0 (scipy's
    Lawson-Hanson; scipy comes with the server and bench extras, and only the
    suites fit delay models, so the import waits until a fit needs it)."""
    from scipy.optimize import nnls as lawson_hanson

    A, b = np.asarray(A, float), np.asarray(b, float).reshape(-1)
    if b.size != A.shape[0]:
        raise ValueError(f"A has {A.shape[0]} rows but b has {b.size} values")
    if A.shape[1] == 0:
        return np.zeros(0)
    return lawson_hanson(A, b)[0]


def _weights(y: np.ndarray, floor_s: float) -> np.ndarray:
    return 1.0 / np.maximum(y, floor_s) if np.isfinite(floor_s) else np.ones_like(y)


def _solve(X: np.ndarray, y: np.ndarray, nonneg: bool, floor_s: float) -> np.ndarray:
    wts = _weights(y, floor_s)
    A = X * wts[:, None]
    scale = np.linalg.norm(A, axis=0)
    scale[scale == 0] = 1.0
    A = A / scale
    beta = nnls(A, y * wts) if nonneg else np.linalg.lstsq(A, y * wts, rcond=None)[0]
    return beta / scale


def _weighted_rms(y: np.ndarray, y_hat: np.ndarray, floor_s: float) -> float:
    """RMS of (y - y_hat) / max(y, floor_s); RMS / mean(y) for an infinite floor."""
    if not np.isfinite(floor_s):
        return float(np.sqrt(np.mean((y - y_hat) ** 2)) / np.mean(y))
    return float(np.sqrt(np.mean(((y - y_hat) * _weights(y, floor_s)) ** 2)))


def _cv_error(X: np.ndarray, y: np.ndarray, cols: List[int], folds: np.ndarray, nonneg: bool,
              floor_s: float) -> float:
    pred = np.zeros_like(y)
    for k in np.unique(folds):
        test = folds == k
        coef = _solve(X[~test][:, cols], y[~test], nonneg, floor_s) if cols else np.zeros(0)
        pred[test] = X[test][:, cols] @ coef
    return _weighted_rms(y, pred, floor_s)


@dataclass(frozen=True)
class KindFit:
    """Eq. (5) fitted for one layer kind: delay_s = sum coef_s[t] * term_t(G, K, O, I)."""

    kind: str
    terms: Tuple[str, ...]
    coef_s: Tuple[float, ...]
    rows: int
    cv_error: float           # cross-validated weighted RMS error of the kept terms
    train_r2: float
    train_mae_s: float

    def predict(self, G, K, O, I) -> np.ndarray:  # noqa: E741 - paper's names
        return design_matrix(G, K, O, I, self.terms) @ np.asarray(self.coef_s, float)

    def formula(self) -> str:
        return " + ".join(f"{c:.3g}*{t}" for t, c in zip(self.terms, self.coef_s)) or "0"


def fit_kind(kind: str, G, K, O, I, seconds, prune: bool = True, nonneg: bool = True,  # noqa: E741
             floor_s: float = WEIGHT_FLOOR_S, folds: int = 5, tol: float = 0.0, seed: int = 0) -> KindFit:
    """Fit eq. (5) to measured ``seconds`` of layers of one kind (see the module docstring)."""
    y = np.asarray(seconds, float).reshape(-1)
    X = design_matrix(G, K, O, I)
    if X.shape[0] != y.size:
        raise ValueError(f"{kind}: {X.shape[0]} layers but {y.size} delays")
    if y.size < 3:
        raise ValueError(f"{kind}: need at least 3 measured layers to fit eq. (5), got {y.size}")
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise ValueError(f"{kind}: delays must be positive and finite")
    # Factors that are constant for this kind (fc: G = K = 1) make terms identical; keep the
    # one with the fewest factors (then the paper's order). Kinds that keep their channel
    # count (O = I: element-wise, pooling, depthwise) drop the terms with I: they repeat the
    # ones with O or square the channel count, which no such layer does.
    same_channels = bool(np.all(np.asarray(O, float) == np.asarray(I, float)))
    distinct: List[int] = []
    for j in sorted(range(len(TERMS)), key=lambda j: (sum(TERM_FLAGS[j]), j)):
        if same_channels and TERM_FLAGS[j][3]:
            continue
        if not any(np.array_equal(X[:, j], X[:, d]) for d in distinct):
            distinct.append(j)
    distinct.sort()
    coef = _solve(X[:, distinct], y, nonneg, floor_s)
    cols = [j for j, c in zip(distinct, coef) if c != 0.0 or not nonneg]
    cv = float("nan")
    if prune and y.size >= folds >= 2:
        fold = np.random.default_rng(seed).permutation(y.size) % folds
        best = cv = _cv_error(X, y, cols, fold, nonneg, floor_s)
        while len(cols) > 1:
            trials = [(_cv_error(X, y, [c for c in cols if c != d], fold, nonneg, floor_s), d)
                      for d in cols]
            err, drop = min(trials)
            if err > best * (1.0 + tol) + CV_EPS:
                break
            cols.remove(drop)
            cv, best = err, min(best, err)
    coef = _solve(X[:, cols], y, nonneg, floor_s)
    keep = [k for k, c in enumerate(coef) if c != 0.0] if nonneg else list(range(len(cols)))
    terms = tuple(TERMS[cols[k]] for k in keep)
    coefs = tuple(float(coef[k]) for k in keep)
    pred = X[:, [cols[k] for k in keep]] @ np.asarray(coefs, float)
    r2 = r2_score(y, pred) if np.ptp(y) > 0 else 1.0
    return KindFit(kind, terms, coefs, int(y.size), cv, r2, mean_abs_error(y, pred))


@dataclass
class DelayModel:
    """Per-kind eq. (5) fits for one host; composite layers are the sum of their parts."""

    fits: Dict[str, KindFit]
    host: str = ""
    meta: Dict[str, object] = field(default_factory=dict)

    def predict(self, info: LayerInfo) -> float:
        """Predicted seconds of one layer (a block: the sum over its parts)."""
        if info.parts:
            return float(sum(self.predict(p) for p in info.parts))
        fit = self.fits.get(info.kind)
        if fit is None:
            raise ValueError(f"no delay model for layer kind {info.kind!r} ({info.name}); "
                             f"fitted kinds: {', '.join(sorted(self.fits))}")
        return max(0.0, float(fit.predict(info.G, info.K, info.O, info.I)[0]))

    def predict_many(self, infos: Iterable[LayerInfo]) -> np.ndarray:
        return np.array([self.predict(i) for i in infos], dtype=float)

    def to_dict(self) -> Dict[str, object]:
        """Plain JSON types (NaN statistics become ``None``); :meth:`from_dict` reads it back."""
        def num(v: float) -> Optional[float]:
            return float(v) if np.isfinite(v) else None
        return {"host": self.host, "meta": dict(self.meta),
                "fits": {k: {"terms": list(f.terms), "coef_s": list(f.coef_s), "rows": f.rows,
                             "cv_error": num(f.cv_error), "train_r2": num(f.train_r2),
                             "train_mae_s": num(f.train_mae_s)} for k, f in self.fits.items()}}

    @classmethod
    def from_dict(cls, data: Dict[str, object]) -> "DelayModel":
        def num(v: object) -> float:
            return float("nan") if v is None else float(v)  # type: ignore[arg-type]
        fits = {}
        for kind, f in dict(data["fits"]).items():  # type: ignore[arg-type]
            fits[kind] = KindFit(kind, tuple(f["terms"]), tuple(float(c) for c in f["coef_s"]),
                                 int(f["rows"]), num(f.get("cv_error")), num(f.get("train_r2")),
                                 num(f.get("train_mae_s")))
            design_matrix([1], [1], [1], [1], fits[kind].terms)  # validates the term names
        return cls(fits, str(data.get("host", "")), dict(data.get("meta", {})))  # type: ignore[arg-type]


def fit_delay_model(infos: Sequence[LayerInfo], seconds: Sequence[float], host: str = "",
                    **kwargs) -> DelayModel:
    """Fit one :func:`fit_kind` per layer kind present in ``infos`` (composites are skipped:
    they are predicted from their parts). ``kwargs`` go to :func:`fit_kind`."""
    y = np.asarray(seconds, float).reshape(-1)
    if len(infos) != y.size:
        raise ValueError(f"{len(infos)} layers but {y.size} delays")
    by_kind: Dict[str, List[int]] = {}
    for k, info in enumerate(infos):
        if info.kind not in COMPOSITE_KINDS and not info.parts:
            by_kind.setdefault(info.kind, []).append(k)
    if not by_kind:
        raise ValueError("no single-kind layers to fit")
    fits = {}
    for kind, idx in by_kind.items():
        sel = [infos[k] for k in idx]
        fits[kind] = fit_kind(kind, [i.G for i in sel], [i.K for i in sel], [i.O for i in sel],
                              [i.I for i in sel], y[idx], **kwargs)
        logger.info("%s (%d layers): %s s, cv rel. error %.3f", kind, len(idx),
                    fits[kind].formula(), fits[kind].cv_error)
    return DelayModel(fits, host)


def evaluate(model: DelayModel, infos: Sequence[LayerInfo], seconds: Sequence[float]) -> Dict[str, float]:
    """R^2 and MAE (footnote 1) of ``model`` on measured layers, plus the median relative error."""
    y = np.asarray(seconds, float).reshape(-1)
    pred = model.predict_many(infos)
    if pred.size != y.size:
        raise ValueError(f"{pred.size} layers but {y.size} delays")
    return {"r2": r2_score(y, pred), "mae_s": mean_abs_error(y, pred), "n": int(y.size),
            "median_rel_error": float(np.median(np.abs(pred - y) / y))}
