"""Tests for mpjax.mp.fits (fits) and mpjax.mp.law (MP law, Tracy–Widom)."""

import numpy as np
import pytest
from scipy.integrate import quad

from mpjax.mp import fits as mp

RATIOS = [0.1, 0.25, 0.5, 1.0]


def noise_spectrum(rng, shape, var=1.0):
    """Singular values of an iid N(0, var) matrix, via the float64 Gram (fast on 2 cores)."""
    w = rng.standard_normal(shape) * np.sqrt(var)
    a = w if shape[0] <= shape[1] else w.T
    return np.sqrt(np.clip(np.linalg.eigvalsh(a @ a.T), 0, None))[::-1], w


# ------------------------------------------------------------------------- the law


@pytest.mark.parametrize("y", RATIOS)
def test_pdf_integrates_to_one_and_cdf_matches_quad(y):
    lo, hi = mp.edges(y, 1.0)
    assert quad(lambda x: mp.pdf(x, y), lo, hi, limit=200)[0] == pytest.approx(1, abs=1e-8)
    xs = np.linspace(lo, hi, 9)[1:-1]
    numeric = [quad(lambda x: mp.pdf(x, y), lo, x, limit=200)[0] for x in xs]
    np.testing.assert_allclose(mp.cdf(xs, y), numeric, atol=1e-8)
    assert mp.cdf(hi * 1.01, y) == 1.0 and mp.cdf(hi + 5, y) == 1.0  # not the reference bug
    assert mp.cdf(lo * 0.99 - 1e-9, y) == 0.0


@pytest.mark.parametrize("y", RATIOS)
def test_quantile_inverts_cdf(y):
    q = np.linspace(0.001, 0.999, 101)
    np.testing.assert_allclose(mp.cdf(mp.quantile(q, y, 2.5), y, 2.5), q, atol=1e-9)


def test_ratio_above_one_has_atom_and_scales():
    c = 2.0
    lo, hi = mp.edges(c, 1.0)
    assert quad(lambda x: mp.pdf(x, c), lo, hi, limit=200)[0] == pytest.approx(1 / c, abs=1e-8)
    assert mp.cdf(0.0, c) == pytest.approx(0.5)  # atom (1 - 1/c) at 0
    assert mp.quantile(0.3, c) == 0.0
    assert mp.cdf(mp.quantile(0.8, c, 3.0), c, 3.0) == pytest.approx(0.8, abs=1e-9)
    assert mp.singular_edges((3072, 768), sigma2=3072 / 768**2) == pytest.approx((1.0, 3.0))


def test_tracy_widom_quantiles_match_spec():
    spec = {0.2: -2.2832, 0.1: -2.7824, 0.5: -1.2686, 0.9: 0.4501, 0.95: 0.9793}
    got = mp.tw_quantile(np.array(list(spec)))
    np.testing.assert_allclose(got, list(spec.values()), atol=1e-3)
    np.testing.assert_allclose(mp.tw_cdf(got), list(spec), atol=1e-5)
    assert np.all(np.diff(mp.tw_cdf(np.linspace(-6, 4, 50))) > 0)


def test_gavish_donoho_constants():
    assert mp.gavish_donoho_lambda(1.0) == pytest.approx(4 / np.sqrt(3), rel=1e-12)
    for b in (0.1, 0.25, 0.5):  # Gavish & Donoho (2014), eq. (11)
        want = np.sqrt(2 * (b + 1) + 8 * b / (b + 1 + np.sqrt(b * b + 14 * b + 1)))
        assert mp.gavish_donoho_lambda(b) == pytest.approx(want, rel=1e-12)
    assert mp.gavish_donoho_omega(1.0) == pytest.approx(2.858, abs=1e-3)
    assert mp.gavish_donoho_omega(1.0, exact=False) == pytest.approx(2.86, abs=1e-9)
    for y in (0.1, 0.5, 0.9):  # the cubic is a good approximation of the exact form
        assert mp.gavish_donoho_omega(y, exact=False) == pytest.approx(
            mp.gavish_donoho_omega(y), abs=0.02
        )


# ------------------------------------------------------------------------- fits


@pytest.mark.parametrize("shape", [(200, 200), (400, 100), (100, 400)])
def test_bema_recovers_noise_variance_over_seeds(shape):
    var = 0.3
    est = []
    for seed in range(20):
        s, _ = noise_spectrum(np.random.default_rng(seed), shape, var)
        f = mp.fit(s, shape)
        assert f.status == "ok" and f.method == "bema"
        assert f.sigma2 == pytest.approx(f.noise_var * max(shape) / shape[1])
        est.append(f.noise_var / var)
    est = np.array(est)
    # BEMA (k/p quantiles, as in docs/method/mp-law.md) is biased up by ~1% at p = 100-200
    assert np.all(np.abs(est - 1) < 0.06), est
    assert abs(est.mean() - 1) < 0.025, est.mean()


@pytest.mark.parametrize("shape,edge", [((768, 768), 2.0), ((3072, 768), 3.0), ((768, 3072), 1.5)])
def test_spec_reference_edges(shape, edge):
    s, _ = noise_spectrum(np.random.default_rng(0), shape, 1.0 / shape[1])
    f = mp.fit(s, shape, alpha=0.25, beta=0.8)
    assert f.edge == pytest.approx(edge, rel=0.02)
    assert f.edge == pytest.approx(np.sqrt(shape[1] * f.lambda_plus))
    assert f.fit_error < 0.02 and f.n_spikes <= 3


def test_tw_forms_differ_as_documented():
    s, _ = noise_spectrum(np.random.default_rng(0), (300, 300))
    paper = mp.fit(s, (300, 300), tw_form="paper")
    code = mp.fit(s, (300, 300), tw_form="reference-code")
    n, t = 300, float(mp.tw_quantile(0.2))  # y = 1
    want = (4 + t * n ** (-2 / 3) * 2**4 / 3) / (4 + t * n ** (-2 / 3) * 2 ** (4 / 3))
    assert code.lambda_plus / paper.lambda_plus == pytest.approx(want, rel=1e-9)
    assert code.sigma2 == paper.sigma2 and code.edge < paper.edge  # t < 0 at beta = 0.8


def planted(seed, n=300, spikes=(8.0, 6.0, 5.0, 4.0, 3.0)):
    """Square noise with ``N(0, 1/n)`` entries (edge 2) plus rank-one spikes above BBP (1)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n, n)) / np.sqrt(n)
    u, _ = np.linalg.qr(rng.standard_normal((n, len(spikes))))
    v, _ = np.linalg.qr(rng.standard_normal((n, len(spikes))))
    w = w + (u * np.array(spikes)) @ v.T
    return np.sqrt(np.clip(np.linalg.eigvalsh(w @ w.T), 0, None))[::-1]


@pytest.mark.parametrize("seed", range(4))
def test_planted_spikes_counted(seed):
    s = planted(seed)
    assert mp.fit(s, (300, 300), method="calibrated", false_spike_rate=0.01).n_spikes == 5
    assert mp.fit(s, (300, 300), method="gavish_donoho").n_spikes == 5
    bema = mp.fit(s, (300, 300))
    assert bema.n_spikes in (5, 6)  # beta = 0.8 allows one false spike most of the time
    assert bema.bulk_fraction == pytest.approx(1 - bema.n_spikes / 300)


def test_gavish_donoho_known_noise_and_position():
    s, _ = noise_spectrum(np.random.default_rng(3), (200, 400), 0.5)
    known = mp.fit(s, (200, 400), method="gavish_donoho", noise_sigma=np.sqrt(0.5))
    assert known.edge == pytest.approx(mp.gavish_donoho_lambda(0.5) * np.sqrt(400 * 0.5))
    unknown = mp.fit(s, (200, 400), method="gavish_donoho")
    assert unknown.edge == pytest.approx(known.edge, rel=0.03)
    bulk_edge = mp.singular_edges((200, 400), 0.5)[1]
    assert 1.08 < unknown.edge / bulk_edge < 1.25  # ~15% above the MP edge
    assert unknown.n_spikes == 0 and unknown.bulk_fraction == 1.0


def test_calibrated_false_spike_rate_is_bounded():
    shape, rate, seeds = (60, 120), 0.1, 150
    calibrated = bema = 0
    for seed in range(seeds):
        s, _ = noise_spectrum(np.random.default_rng(1000 + seed), shape)
        calibrated += mp.fit(s, shape, method="calibrated", false_spike_rate=rate).n_spikes > 0
        bema += mp.fit(s, shape, beta=0.8).n_spikes > 0
    assert calibrated / seeds <= rate + 3 * np.sqrt(rate * (1 - rate) / seeds)
    assert bema / seeds > 0.4  # the default beta is not a rate control: it spikes often


@pytest.mark.parametrize(
    "s,shape,status",
    [
        (np.ones(5), (5, 9), "too_small"),
        (np.zeros(40), (40, 40), "all_zero"),
        (np.r_[np.linspace(3, 1, 10), np.zeros(30)], (40, 60), "rank_deficient"),
    ],
)
def test_degenerate_spectra_give_status_not_nan(s, shape, status):
    f = mp.fit(s, shape)
    assert f.status.startswith(status) and not f.ok
    numbers = [f.sigma2, f.lambda_plus, f.edge, f.fit_error, f.bulk_fraction, f.noise_var]
    assert all(np.isfinite(numbers)) and f.n_spikes >= 0


@pytest.mark.parametrize("method", mp.METHODS)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_spectrum_reports_no_numbers(method, bad):
    """NaN/Inf in: status "nonfinite", NaN floats and the UNCOUNTED spike sentinel out."""
    f = mp.fit(np.r_[bad, np.linspace(2, 1, 39)], (40, 40), method=method)
    assert f.status.startswith("nonfinite") and not f.ok
    numbers = [f.sigma2, f.lambda_plus, f.edge, f.fit_error, f.bulk_fraction, f.noise_var]
    assert all(np.isnan(numbers)), numbers
    assert f.n_spikes == mp.UNCOUNTED == -1 and f.shape == (40, 40) and f.method == method


def test_fit_validates_options():
    s = np.ones(10)
    with pytest.raises(ValueError, match="expected min"):
        mp.fit(s, (11, 20))
    with pytest.raises(ValueError, match="method"):
        mp.fit(s, (10, 20), method="svd")
    with pytest.raises(ValueError, match="alpha"):
        mp.fit(s, (10, 20), alpha=0.5)
    with pytest.raises(ValueError, match="tw_form"):
        mp.fit(s, (10, 20), tw_form="code")
    with pytest.raises(ValueError, match="noise_sigma"):
        mp.fit(np.linspace(1, 2, 10), (10, 20), method="gavish_donoho", noise_sigma=-1.0)
    with pytest.raises(ValueError, match="false_spike_rate"):
        mp.check_options(method="calibrated", false_spike_rate=1.0)


def test_hill_alpha_and_stable_rank():
    assert mp.stable_rank(np.array([2.0, 1.0, 1.0])) == pytest.approx(1.5)
    assert mp.stable_rank(np.zeros(4)) == 0.0
    # power-law tail e_i ~ i^(-1/(a-1)) has Hill exponent ~ a
    i = np.arange(1, 2001)
    e = i ** (-1 / 1.5)
    assert mp.hill_alpha(np.sqrt(e), k=200) == pytest.approx(2.5, rel=0.1)
    assert mp.hill_alpha(np.ones(30)) is None and mp.hill_alpha(np.array([1.0])) is None
