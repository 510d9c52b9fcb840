"""The ToMe token schedule (mpjax.arch.tokens): clipping, per-block r, errors, and the model."""

import pytest

from mpjax import arch


def oracle(tokens, rs, protected=1):
    """Bipartite matching written out: A = even positions (class token protected), B = odd;
    at most min(|A unprotected|, |B|) pairs can merge, and never more than asked."""
    out, n = [], tokens
    for r in rs:
        out.append(n)
        a_free = (n + 1) // 2 - protected  # even positions minus the protected class token
        b = n // 2
        n -= max(0, min(r, a_free, b))
    return tuple(out)


def test_schedule_examples():
    assert arch.tome_schedule(197, 3, 8) == (197, 189, 181)
    assert arch.tome_schedule(197, 13, 8)[-1] == 197 - 8 * 12
    assert arch.tome_schedule(17, 5, 4) == (17, 13, 9, 5, 3)
    assert arch.tome_schedule(17, 4, 0) == (17, 17, 17, 17)
    # clipping: at most (T - 1) // 2 merges per block
    assert arch.tome_schedule(17, 5, 100) == (17, 9, 5, 3, 2)
    assert arch.tome_schedule(17, 4, (1, 0, 2, 0)) == (17, 16, 16, 14)
    assert arch.tome_schedule(197, 3, (0, 16, 8)) == (197, 197, 181)


@pytest.mark.parametrize("tokens", [2, 3, 17, 50, 197])
@pytest.mark.parametrize("r", [0, 1, 4, 8, 30, 100])
def test_schedule_matches_bipartite_oracle(tokens, r):
    assert arch.tome_schedule(tokens, 8, r) == oracle(tokens, [r] * 8)
    assert arch.tome_schedule(tokens, 8, r, protected=0) == oracle(tokens, [r] * 8, protected=0)


def test_tome_merges_clips_at_half_the_unprotected_tokens():
    assert arch.tome_merges(197, 8) == 8
    assert arch.tome_merges(17, 100) == 8
    assert arch.tome_merges(17, 100, protected=0) == 8
    assert arch.tome_merges(18, 100, protected=0) == 9
    assert arch.tome_merges(1, 5) == arch.tome_merges(0, 5) == arch.tome_merges(9, -3) == 0


def test_per_block_r():
    assert arch.per_block_r(8, 3) == (8, 8, 8)
    assert arch.per_block_r((0, 5, 2), 3) == (0, 5, 2)
    assert arch.per_block_r([1, 2], 2) == (1, 2)
    with pytest.raises(ValueError, match="tome_r.*one per block"):
        arch.per_block_r((1, 2), 3)
    with pytest.raises(ValueError, match="tome_r"):
        arch.per_block_r((1, -2), 2)
    with pytest.raises(ValueError, match="tome_r"):
        arch.tome_schedule(197, 2, -1)


def test_model_token_counts_follow_the_schedule():
    vit = pytest.importorskip("mpjax.models.vit")
    cfg = vit.config_for("b16")
    assert vit.token_counts(cfg, 8) == [197 - 8 * i for i in range(13)]
    assert vit.token_counts(cfg, 0) == [197] * 13
    rs = (0, 5, 30, 2) * 3
    counts = vit.token_counts(cfg, rs)
    assert tuple(counts[:12]) == arch.tome_schedule(197, 12, rs)
    assert counts[12] == counts[11] - arch.tome_merges(counts[11], rs[-1])
