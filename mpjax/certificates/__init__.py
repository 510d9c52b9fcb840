"""Data-path certificates of pruning [P26]: what removing part of a layer can do to the loss.

* :mod:`~mpjax.certificates.objectives`: cross-entropy, the elastic-net penalty and objective,
  logit margins.
* :mod:`~mpjax.certificates.bounds`: the data-path bound ``B_T(R)``, the Lipschitz constants it
  needs and its Gaussian form.
* :mod:`~mpjax.certificates.statements`: the certificates built on it (margins, elastic-net and
  Frobenius, prune-restore, stationarity, telescoping, threshold support recovery).
* :mod:`~mpjax.certificates.checks`: measured quantities against their bounds.
* :mod:`~mpjax.certificates.capture`: layer inputs and Lipschitz constants of a Flax network.
* :mod:`~mpjax.certificates.network`: :func:`certify_network` on a Flax network, its reports.

The math, with its references, is in ``docs/method/certificates.md``.

References:
  [P26] Berlyand, Bourdais, Owhadi, Shmalo et al., "Pruning DNNs via the Marchenko-Pastur
  Distribution" (arXiv 2606.02608), Sec. "Certificates".
"""

from mpjax.certificates import (
    bounds,
    capture,
    checks,
    network,
    objectives,
    statements,
)
from mpjax.certificates.bounds import (
    ONE_LIPSCHITZ_ACTIVATIONS,
    PathBound,
    data_path_bound,
    gaussian_drift_bound,
    gaussian_g_from_edge,
    gaussian_path_bound,
    is_zero_bound,
    jacobian_lipschitz_estimate,
    matrix_inf_norm,
    mlp_lipschitz,
    path_bound,
    residual_inf_norms,
)
from mpjax.certificates.capture import (
    LipschitzFn,
    capture_inputs,
    estimated_lipschitz_fn,
    jacobian_lipschitz,
    mlp_lipschitz_bound,
)
from mpjax.certificates.checks import (
    Check,
    Ledger,
    check_bound,
    check_frequency,
    check_level,
    check_logit_drift,
    check_margins,
    check_objective_bound,
    check_path_bound,
    min_draws,
)
from mpjax.certificates.network import (
    CertifyReport,
    LayerReport,
    certify_network,
    format_report,
    mlp_from_params,
)
from mpjax.certificates.objectives import (
    accuracy,
    cross_entropy,
    elastic_net_objective,
    elastic_net_penalty,
    l1_penalty,
    l2_penalty,
    params_penalty,
    per_sample_cross_entropy,
    predicted_margin,
    true_margin,
)
from mpjax.certificates.statements import (
    ElasticNetCertificate,
    MarginCertificate,
    PruneRestore,
    Stationarity,
    TelescopedBound,
    elastic_net_certificate,
    frobenius_certificate,
    margin_certificate,
    prune_restore,
    stationarity_bound,
    stationarity_eps,
    support_threshold,
    telescope,
    threshold_support,
)

__all__ = [
    "bounds",
    "capture",
    "checks",
    "network",
    "objectives",
    "statements",
    "accuracy",
    "capture_inputs",
    "certify_network",
    "CertifyReport",
    "Check",
    "check_bound",
    "check_frequency",
    "check_level",
    "check_logit_drift",
    "check_margins",
    "check_objective_bound",
    "check_path_bound",
    "cross_entropy",
    "data_path_bound",
    "elastic_net_certificate",
    "elastic_net_objective",
    "elastic_net_penalty",
    "ElasticNetCertificate",
    "estimated_lipschitz_fn",
    "format_report",
    "frobenius_certificate",
    "gaussian_drift_bound",
    "gaussian_g_from_edge",
    "gaussian_path_bound",
    "is_zero_bound",
    "jacobian_lipschitz",
    "jacobian_lipschitz_estimate",
    "l1_penalty",
    "l2_penalty",
    "LayerReport",
    "Ledger",
    "LipschitzFn",
    "margin_certificate",
    "MarginCertificate",
    "matrix_inf_norm",
    "mlp_from_params",
    "mlp_lipschitz",
    "mlp_lipschitz_bound",
    "min_draws",
    "ONE_LIPSCHITZ_ACTIVATIONS",
    "params_penalty",
    "path_bound",
    "PathBound",
    "per_sample_cross_entropy",
    "predicted_margin",
    "prune_restore",
    "PruneRestore",
    "residual_inf_norms",
    "Stationarity",
    "stationarity_bound",
    "stationarity_eps",
    "support_threshold",
    "telescope",
    "TelescopedBound",
    "threshold_support",
    "true_margin",
]
