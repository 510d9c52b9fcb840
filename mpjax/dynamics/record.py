"""What the dynamics study records per layer, and the MP pruning step of Algorithm 1.

Conventions (see `docs/method/l2-theory.md`). ``W`` is the ``(d_out, d_in)`` matrix view, ``W = U diag(s) V^T``,
``s`` descending, ``p = min(d_out, d_in)``, ``n = max``, ``y = p / n``. The MP fit
(:func:`mpjax.mp.fits.fit`, BEMA) sees eigenvalues ``s^2 / d_in`` and returns ``sigma2`` and the
bulk edge ``sigma_plus`` on the singular-value scale. From it we derive:

* ``v_star``: the per-entry variance of the bulk, ``W = S + R`` with ``R_ij ~ N(0, v_star)``.
  The asymptotic edge of such an ``R`` is ``sqrt(v)(sqrt(d_out) + sqrt(d_in))``, while the fit's
  asymptotic edge is ``sqrt(d_in sigma2)(1 + sqrt(y))``; equating them,
  ``v_star = sigma2 d_in (1 + sqrt y)^2 / (sqrt d_out + sqrt d_in)^2`` (``= sigma2`` when
  ``d_out <= d_in``; the Tracy-Widom shift of the edge is left out on purpose).
* ``g_star = d_in v_star``: the ``g`` of the papers' ``R ~ N(0, g / N)`` with ``N = d_in``.
* ``gN = d_out d_in v_star``: the papers' ``g* N``, i.e. ``E ||R||_F^2`` (``= g* N`` for a
  square ``N x N`` layer); it tends to 0 when the bulk collapses.
* ``bulk_energy = sum_{s_i <= sigma_plus} s_i^2``: the bulk's share of ``||W||_F^2``, a
  second estimate of ``||R||_F^2`` (it misses the part of ``R`` along the spikes).
* ``sigma_hat``: inverse BBP of the top singular values. For ``R`` with entry variance ``v``
  and ``a = sqrt(v n)``, ``c = y``, a rank-one signal ``theta`` shows up at
  ``s = a sqrt((1 + t)(c + t) / t)``, ``t = (theta / a)^2`` (Benaych-Georges & Nadakuditi 2012),
  inverted as ``t = [(s0^2 - 1 - c) + sqrt((s0^2 - 1 - c)^2 - 4c)] / 2``, ``s0 = s / a``.
  For a square layer this is the papers' ``sigma_hat = (s + sqrt(s^2 - 4 g*))/2``, which is
  recorded too as ``sigma_hat_paper`` (with ``g* = d_in v_star``). Values below the edge
  (no outlier) give NaN.
* ``overlap_u``, ``overlap_v``: ``||U_k^T U'_k||_F^2 / k`` between the top-``k`` left (right)
  singular subspaces of this epoch and of the previous one (1 = same subspace).

:func:`decompose` is the thin SVD of one layer (the records need singular vectors:
:func:`mpjax.mp.spectra.thin_svd` on the host); :func:`record_epoch` and :func:`mp_prune_members`
apply :func:`layer_record` and :func:`mp_prune_matrix` to every layer of every member of a run.

References:
  [P25] Berlyand et al., arXiv 2503.01922, Algorithm 1 and §5 (L2 training dynamics).
  Benaych-Georges & Nadakuditi, Adv. Math. 227 (2011) / JMVA 111 (2012): the BBP outlier map.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mpjax import mp
from mpjax.dynamics.config import DynamicsConfig
from mpjax.mp import spectra
from mpjax.pruning import factorization_saves

#: Layers with fewer singular values than this are recorded but never MP-pruned: a
#: bulk fit on a handful of values (e.g. the 10 x d classifier) means nothing.
MIN_PRUNE_P = 32

#: Where :func:`decompose` runs the SVD: ``"numpy"`` (float64 on the host) or ``"jax"``.
BACKENDS = ("numpy", "jax")

#: Per-layer scalar fields of a record (arrays of shape ``(members,)``).
SCALARS = (
    "sigma2",
    "sigma_plus",
    "fit_error",
    "bulk_fraction",
    "n_spikes",
    "v_star",
    "g_star",
    "gN",
    "bulk_energy",
    "frob2",
    "overlap_u",
    "overlap_v",
    "rank",
    "params_effective",
)


class Decomp(NamedTuple):
    """Thin SVD ``W = U diag(s) Vt`` of one ``(d_out, d_in)`` view, in float64.

    Attributes:
      s: all ``p = min(d_out, d_in)`` singular values, descending.
      U: left singular vectors, ``(d_out, p)``, columns in the order of ``s``.
      Vt: right singular vectors as rows, ``(p, d_in)``.
    """

    s: np.ndarray
    U: np.ndarray
    Vt: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        """``(d_out, d_in)`` of the decomposed matrix."""
        return self.U.shape[0], self.Vt.shape[1]

    def top(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(U_k, V_k)``: top-``k`` left and right singular vectors (columns)."""
        return self.U[:, :k], self.Vt[:k].T

    def truncate(self, r: int) -> np.ndarray:
        """Best rank-``r`` approximation ``U_r diag(s_r) V_r^T`` (Eckart-Young)."""
        return (self.U[:, :r] * self.s[:r]) @ self.Vt[:r]


def decompose(W: np.ndarray, backend: str = "numpy") -> Decomp:
    """The thin SVD of one matrix view, as a :class:`Decomp` in float64.

    Args:
      W: a ``(d_out, d_in)`` matrix.
      backend: ``"numpy"``: :func:`mpjax.mp.spectra.thin_svd` (float64 Gram
        eigendecomposition on the host, 2-3x cheaper than a LAPACK SVD; CPU runs);
        ``"jax"``: a float32 SVD on the default device (accelerator runs), converted to
        float64.

    Raises:
      ValueError: for an unknown ``backend``.

    Examples:
      >>> import numpy as np
      >>> dec = decompose(np.diag([1.0, 3.0]))
      >>> dec.s.tolist(), np.abs(dec.truncate(1)).tolist()
      ([3.0, 1.0], [[0.0, 0.0], [0.0, 3.0]])
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: expected one of {BACKENDS}.")
    if backend == "jax":
        u, s, vt = jnp.linalg.svd(jnp.asarray(W, jnp.float32), full_matrices=False)
        return Decomp(*(np.asarray(a, np.float64) for a in (s, u, vt)))
    return Decomp(*spectra.thin_svd(W))


def default_backend() -> str:
    """``"jax"`` on an accelerator (float32 SVD on device), ``"numpy"`` on CPU (float64)."""
    return "numpy" if jax.default_backend() == "cpu" else "jax"


def bema_fit(s: np.ndarray, shape: tuple[int, int]) -> Any:
    """The BEMA fit (:func:`mpjax.mp.fit`) of singular values ``s`` of a ``shape`` matrix."""
    return mp.fit(np.asarray(s, np.float64), shape)


def entry_variance(sigma2: float, shape: tuple[int, int]) -> float:
    """``v_star = sigma2 d_in (1 + sqrt y)^2 / (sqrt d_out + sqrt d_in)^2`` (see module doc)."""
    d_out, d_in = shape
    y = min(d_out, d_in) / max(d_out, d_in)
    return float(sigma2 * d_in * (1 + np.sqrt(y)) ** 2 / (np.sqrt(d_out) + np.sqrt(d_in)) ** 2)


def inverse_bbp(s: np.ndarray, v: float, shape: tuple[int, int]) -> np.ndarray:
    """Signal singular values ``theta`` behind observed outliers ``s`` (NaN inside the bulk).

    Args:
      s: observed singular values.
      v: per-entry variance of the noise ``R``.
      shape: ``(d_out, d_in)``.

    Returns:
      ``theta`` with ``s = a sqrt((1 + t)(c + t)/t)``, ``t = (theta/a)^2``, ``a = sqrt(v n)``.
    """
    p, n = min(shape), max(shape)
    c = p / n
    a = np.sqrt(max(v, 0.0) * n)
    s = np.asarray(s, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        b = (s / a) ** 2 - 1 - c
        disc = b * b - 4 * c
        ok = (b > 0) & (disc >= 0) & (a > 0)
        t = np.where(ok, (b + np.sqrt(np.where(ok, disc, 0.0))) / 2, np.nan)
        return np.where(ok, a * np.sqrt(t), np.nan)


def inverse_bbp_paper(s: np.ndarray, g_star: float) -> np.ndarray:
    """The papers' square-layer form ``(s + sqrt(s^2 - 4 g*)) / 2`` (NaN when ``s^2 < 4 g*``)."""
    s = np.asarray(s, np.float64)
    disc = s * s - 4 * g_star
    return np.where(disc >= 0, (s + np.sqrt(np.maximum(disc, 0.0))) / 2, np.nan)


def subspace_overlap(A: np.ndarray, B: np.ndarray) -> float:
    """``||A^T B||_F^2 / k`` for two ``(d, k)`` orthonormal bases (1: same subspace)."""
    k = A.shape[1]
    return float(np.sum((A.T @ B) ** 2) / k) if k else float("nan")


def layer_record(
    dec: Decomp,
    top_k: int,
    prev: tuple[np.ndarray, np.ndarray] | None = None,
    rank: int | None = None,
    fit_fn: Callable = bema_fit,
) -> dict[str, Any]:
    """All recorded quantities of one layer of one member (see the module docstring).

    Args:
      dec: the layer's :func:`decompose` (``s`` descending, length ``p``).
      top_k: number of top singular values / vectors kept.
      prev: ``(U_k, V_k)`` of the previous epoch for the overlaps, or ``None`` (NaN).
      rank: the rank the layer was last truncated to by MP pruning (``None``: full rank).
      fit_fn: ``(s, shape) -> MPFit``.

    Returns:
      A dict of floats (the :data:`SCALARS`), ``"status"`` (str), and arrays ``"s"`` (p,),
      ``"top_s"``, ``"sigma_hat"``, ``"sigma_hat_paper"`` (k,), ``"U_top"`` (d_out, k),
      ``"V_top"`` (d_in, k).
    """
    shape = dec.shape
    d_out, d_in = shape
    s64 = dec.s
    p = s64.shape[0]
    k = min(top_k, p)
    fit = fit_fn(s64, shape)
    edge = float(fit.edge)
    v = entry_variance(float(fit.sigma2), shape)
    U_k, V_k = dec.top(k)
    r = p if rank is None else int(rank)
    return {
        "sigma2": float(fit.sigma2),
        "sigma_plus": edge,
        "fit_error": float(fit.fit_error),
        "bulk_fraction": float(fit.bulk_fraction),
        "n_spikes": float(np.sum(s64 > edge)) if np.isfinite(edge) else float("nan"),
        "v_star": v,
        "g_star": v * d_in,
        "gN": v * d_in * d_out,
        "bulk_energy": (
            float(np.sum(np.where(s64 <= edge, s64**2, 0.0))) if np.isfinite(edge) else float("nan")
        ),
        "frob2": float(np.sum(s64**2)),
        "overlap_u": subspace_overlap(U_k, prev[0]) if prev is not None else float("nan"),
        "overlap_v": subspace_overlap(V_k, prev[1]) if prev is not None else float("nan"),
        "rank": float(r),
        "params_effective": float(
            r * (d_out + d_in) if factorization_saves(shape, r) else d_out * d_in
        ),
        "status": str(fit.status),
        "s": s64,
        "top_s": s64[:k],
        "sigma_hat": inverse_bbp(s64[:k], v, shape),
        "sigma_hat_paper": inverse_bbp_paper(s64[:k], v * d_in),
        "U_top": U_k.astype(np.float32),
        "V_top": V_k.astype(np.float32),
    }


def member_views(params: Any, i: int) -> np.ndarray:
    """The ``(M, d_out, d_in)`` matrix views of layer ``Dense_i`` of every member."""
    return np.swapaxes(np.asarray(params[f"Dense_{i}"]["kernel"]), 1, 2)  # (M, d_out, d_in)


def layer_paths(config: DynamicsConfig) -> list[str]:
    """``["Dense_0/kernel", ...]``, the recorded matrices (views are ``kernel.T``)."""
    return [f"Dense_{i}/kernel" for i in range(config.n_layers)]


def record_epoch(
    config: DynamicsConfig,
    params: Any,
    ranks: np.ndarray,
    prev: dict[str, tuple[np.ndarray, np.ndarray]] | None,
    backend: str = "numpy",
) -> tuple[dict[str, np.ndarray], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Spectral records of every layer of every member, as arrays with a member axis.

    Returns:
      ``(arrays, top)``: arrays keyed ``"<path>/<field>"`` (fields of
      :func:`mpjax.dynamics.record.layer_record`), and ``top[path] = (U_top, V_top)`` stacks
      for the next epoch's overlaps.
    """
    arrays, top = {}, {}
    for i, path in enumerate(layer_paths(config)):
        W = member_views(params, i)
        recs = []
        for m in range(W.shape[0]):
            pv = None if prev is None else (prev[path][0][m], prev[path][1][m])
            r = None if ranks[m, i] >= min(W.shape[1:]) else int(ranks[m, i])
            recs.append(layer_record(decompose(W[m], backend), config.top_k, pv, r))
        for key in recs[0]:
            arrays[f"{path}/{key}"] = np.stack([np.asarray(r[key]) for r in recs])
        top[path] = (arrays[f"{path}/U_top"], arrays[f"{path}/V_top"])
    return arrays, top
