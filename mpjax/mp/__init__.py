"""The Marchenko–Pastur law, singular spectra of weight matrices, MP fits and per-layer analysis."""

import importlib

from mpjax.mp import analysis, fits, law, spectra
from mpjax.mp.analysis import (
    Analysis,
    analyze,
    analyze_to_dir,
)
from mpjax.mp.fits import (
    METHODS,
    MPFit,
    fit,
    gavish_donoho_lambda,
    gavish_donoho_omega,
    hill_alpha,
    stable_rank,
)
from mpjax.mp.law import (
    cdf,
    edges,
    pdf,
    quantile,
    singular_edges,
    tw_cdf,
    tw_quantile,
)
from mpjax.mp.spectra import (
    matrix_singular_values,
    singular_values,
    thin_svd,
)

__all__ = [
    "analysis",
    "fits",
    "law",
    "plots",
    "spectra",
    "Analysis",
    "METHODS",
    "MPFit",
    "analyze",
    "analyze_to_dir",
    "cdf",
    "edges",
    "fit",
    "gavish_donoho_lambda",
    "gavish_donoho_omega",
    "hill_alpha",
    "matrix_singular_values",
    "pdf",
    "quantile",
    "singular_edges",
    "singular_values",
    "thin_svd",
    "stable_rank",
    "tw_cdf",
    "tw_quantile",
]


def __getattr__(name: str):
    """``mpjax.mp.plots`` on first use: it imports matplotlib, which analysis alone never needs."""
    if name == "plots":
        return importlib.import_module("mpjax.mp.plots")
    raise AttributeError(f"module 'mpjax.mp' has no attribute {name!r}")
