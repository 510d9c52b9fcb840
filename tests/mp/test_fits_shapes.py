"""mpjax.mp.fits on non-square layers: the BEMA edge factor term by term, and the calibrated
edge's planted-spike count and false-spike rate on tall as well as wide and square shapes.

A tall layer (``d_out > d_in``, e.g. a ViT fc1 3072 x 768) is where ``n = d_out`` and ``d_in``
differ, so an edge normalised by the wrong one is off by ``sqrt(n / d_in)``."""

import math

import numpy as np
import pytest

from mpjax.mp import fits as mp

TW_02 = -2.2832  # F_TW1^-1(0.2), the published table value (beta = 0.8)
SHAPES = [(480, 120), (120, 480), (240, 240), (300, 160)]  # tall x4, wide x4, square, tall


def noise_svals(rng, shape, var):
    w = rng.standard_normal(shape) * math.sqrt(var)
    a = w if shape[0] <= shape[1] else w.T
    return np.sqrt(np.clip(np.linalg.eigvalsh(a @ a.T), 0, None))[::-1]


@pytest.mark.parametrize("shape", [(3072, 768), (768, 3072), (500, 100), (100, 500), (256, 256)])
@pytest.mark.parametrize("tw_form", ["paper", "reference-code"])
def test_bema_edge_factor_exactly(shape, tw_form):
    """``lambda_plus / sigma2 = (1+sqrt y)^2 + t n^(-2/3) y^(-1/6) g(y)``, ``g = (1+sqrt y)^(4/3)``
    (paper) or ``(1+sqrt y)^4 / 3`` (reference code), with ``t`` the tabulated TW quantile.
    The fit is fed a spectrum that is exactly the MP quantiles, so only the factor matters."""
    p, n = min(shape), max(shape)
    y = p / n
    s = np.sort(np.sqrt(mp.quantile((np.arange(p) + 0.5) / p, y) * shape[1]))[::-1]
    f = mp.fit(s, shape, tw_form=tw_form)
    g = (1 + math.sqrt(y)) ** (4 / 3) if tw_form == "paper" else (1 + math.sqrt(y)) ** 4 / 3
    want = (1 + math.sqrt(y)) ** 2 + TW_02 * n ** (-2 / 3) * y ** (-1 / 6) * g
    assert f.lambda_plus / f.sigma2 == pytest.approx(want, rel=2e-6)
    wrong = (1 + math.sqrt(y)) ** 2 + TW_02 * n ** (-2 / 3) * y ** (1 / 6) * g
    if y < 1:  # the y^(+1/6) slip differs by more than the tolerance on every non-square shape
        assert abs(want / wrong - 1) > 1e-4
    assert f.edge == pytest.approx(math.sqrt(shape[1] * f.lambda_plus), rel=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_calibrated_edge_sits_at_the_noise_edge(shape):
    """On ``N(0, v)`` noise the calibrated edge is ``sqrt(v) (sqrt(d_out) + sqrt(d_in))`` up to
    the Tracy–Widom shift (a few percent), whatever the orientation."""
    rng = np.random.default_rng(sum(shape))
    v = 0.3
    f = mp.fit(noise_svals(rng, shape, v), shape, method="calibrated", false_spike_rate=0.05)
    asym = math.sqrt(v) * (math.sqrt(shape[0]) + math.sqrt(shape[1]))
    assert 1.0 < f.edge / asym < 1.04, f.edge / asym
    assert f.noise_var == pytest.approx(v, rel=0.05)


@pytest.mark.parametrize("shape", SHAPES)
def test_calibrated_counts_planted_spikes(shape):
    """Four rank-one spikes at 1.2-2x the noise edge are all counted, none extra (seeds 0-2)."""
    d_out, d_in = shape
    edge = math.sqrt(d_out) + math.sqrt(d_in)  # unit-variance noise
    for seed in range(3):
        rng = np.random.default_rng(seed)
        w = rng.standard_normal(shape)
        u = np.linalg.qr(rng.standard_normal((d_out, 4)))[0]
        vt = np.linalg.qr(rng.standard_normal((d_in, 4)))[0]
        w = w + (u * edge * np.array([2.0, 1.6, 1.4, 1.2])) @ vt.T
        a = w if d_out <= d_in else w.T
        s = np.sqrt(np.clip(np.linalg.eigvalsh(a @ a.T), 0, None))  # float64 Gram: fast
        assert mp.fit(s, shape, method="calibrated", false_spike_rate=0.01).n_spikes == 4


@pytest.mark.parametrize("shape", [(240, 60), (60, 240)])
def test_calibrated_false_spike_rate_tall_and_wide(shape):
    """Pure noise: the share of layers with a false spike is near the requested rate (within
    3 binomial sd), and not far below it either (an edge set too high would hide spikes)."""
    rate, seeds = 0.2, 150
    hits = sum(
        mp.fit(noise_svals(np.random.default_rng(7000 + i), shape, 1.0), shape,
               method="calibrated", false_spike_rate=rate).n_spikes > 0
        for i in range(seeds)
    )  # fmt: skip
    sd = math.sqrt(rate * (1 - rate) / seeds)
    assert rate - 3.5 * sd <= hits / seeds <= rate + 3 * sd, hits / seeds
