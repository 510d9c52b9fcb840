"""The N:M pattern (mpjax.arch.patterns): one typed value, one parser."""

import pytest

from mpjax.arch import DENSE, NMPattern, parse_pattern


@pytest.mark.parametrize(
    "spec,k,n", [("2:4", 2, 4), ("1:4", 1, 4), ("8:16", 8, 16), ("12:16", 12, 16), ("6:12", 6, 12)]
)
def test_accepts_k_of_n(spec, k, n):
    p = parse_pattern(spec)
    assert p == NMPattern(k, n) and isinstance(p, NMPattern)
    kk, nn = p  # unpacks like a pair
    assert (kk, nn) == (k, n) and str(p) == spec
    assert p.sparsity == pytest.approx(1 - k / n) and p.density == pytest.approx(k / n)
    assert not p.is_dense


def test_tuple_and_pattern_input():
    assert parse_pattern((2, 4)) == NMPattern(2, 4)
    assert parse_pattern([8, 16]) == NMPattern(8, 16)
    assert parse_pattern(NMPattern(1, 4)) == NMPattern(1, 4)
    assert parse_pattern(("2", "4")) == NMPattern(2, 4)


@pytest.mark.parametrize(
    "spec", ["4:4", "dense", "0:4", "5:4", "-1:4", "2-4", "a:b", "2:4:8", "", (3, 3)]
)
def test_pruning_rejects_non_cuts(spec):
    with pytest.raises(ValueError, match="pattern="):
        parse_pattern(spec)


def test_error_names_the_value_and_the_form():
    with pytest.raises(ValueError, match=r"pattern='2-4': expected 'K:N'"):
        parse_pattern("2-4")
    with pytest.raises(ValueError, match=r"pattern='4:4': need 0 < K < N"):
        parse_pattern("4:4")
    with pytest.raises(ValueError, match=r"pattern='5:4': need 0 < K <= N"):
        parse_pattern("5:4", allow_dense=True)
    with pytest.raises(ValueError, match=r"\(or 'dense'\)"):
        parse_pattern("x", allow_dense=True)
    with pytest.raises(ValueError, match=r"pattern=None"):
        parse_pattern(None)


def test_allow_dense_accepts_k_equal_n_and_dense():
    assert parse_pattern("dense", allow_dense=True) == DENSE == NMPattern(1, 1)
    assert DENSE.is_dense and DENSE.sparsity == 0.0
    four = parse_pattern("4:4", allow_dense=True)
    assert four == NMPattern(4, 4) and four.is_dense
    assert parse_pattern((16, 16), allow_dense=True).is_dense
    assert parse_pattern("2:4", allow_dense=True) == NMPattern(2, 4)
    for bad in ("0:4", "5:4", "dense:", "Dense"):
        with pytest.raises(ValueError, match="pattern="):
            parse_pattern(bad, allow_dense=True)
