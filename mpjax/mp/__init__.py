"""The Marchenko–Pastur law, singular spectra of weight matrices, MP fits and per-layer analysis."""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for readers and static tools; at run time names load on first use
    from mpjax.mp import analysis, fits, law, plots, spectra
    from mpjax.mp.analysis import Analysis, analyze, analyze_to_dir
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
    from mpjax.mp.spectra import matrix_singular_values, singular_values, thin_svd

#: Submodules reachable as ``mpjax.mp.<name>``.
_SUBMODULES = ("analysis", "fits", "lapack", "law", "plots", "spectra")
#: ``mpjax.mp.<name>`` -> the submodule that defines it.
_NAMES = {
    **dict.fromkeys(("Analysis", "analyze", "analyze_to_dir"), "analysis"),
    **dict.fromkeys(("METHODS", "MPFit", "fit", "gavish_donoho_lambda", "gavish_donoho_omega",
                     "hill_alpha", "stable_rank"), "fits"),  # fmt: skip
    **dict.fromkeys(("cdf", "edges", "pdf", "quantile", "singular_edges", "tw_cdf",
                     "tw_quantile"), "law"),  # fmt: skip
    **dict.fromkeys(("matrix_singular_values", "singular_values", "thin_svd"), "spectra"),
}

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


def __getattr__(name: str) -> Any:
    """Submodules and names on first use (PEP 562): the law and the fits need numpy only,
    the spectra and the analysis JAX, the plots matplotlib; none is imported before it is
    asked for."""
    if name in _SUBMODULES:
        return importlib.import_module(f"mpjax.mp.{name}")
    if name in _NAMES:
        value = getattr(importlib.import_module(f"mpjax.mp.{_NAMES[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mpjax.mp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
