"""2:4 sparse Linear layers on cuSPARSELt, with the compressed weight prepared once.

Two execution paths (see `docs/method/runtime.md`):

* :class:`CsltLinear` calls ``torch._cslt_sparse_mm(packed, x.t(), bias=b,
  transpose_result=True)`` directly: ``y = x W^T + b`` with ``W`` (d_out, d_in) compressed
  once by ``torch._cslt_compress``, the bias fused and no transposes outside the kernel. The
  kernel algorithm is chosen per GEMM shape by ``torch._cslt_sparse_mm_search`` when
  available and cached (searching never happens inside CUDA-graph capture: warm up first).
* :class:`SemiStructuredLinear` uses the public ``to_sparse_semi_structured`` wrapper.

Only layers whose mask is 2:4 along ``d_in`` (at most 2 non-zeros in every group of 4
consecutive inputs) and whose shape satisfies the kernel rules
(:func:`mpjax.export.semi_structured_eligible`) are converted; wider patterns stay dense.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mpjax.export import semi_structured_eligible

#: (d_out, d_in, tokens, dtype, transpose_result) -> cuSPARSELt algorithm id.
_ALG_CACHE: dict[tuple, int] = {}
#: The 2:4 kernels run on CUDA only (tests emulate them on CPU and switch this off).
REQUIRE_CUDA = True


def check_nm(weight: torch.Tensor, name: str, k: int = 2, n: int = 4) -> None:
    """Raise ``ValueError`` unless every group of ``n`` inputs of every row has <= ``k`` non-zeros.

    Args:
      weight: (d_out, d_in) weight (or bool mask) in torch layout.
      name: layer name for the message.
    """
    if weight.ndim != 2 or weight.shape[1] % n:
        raise ValueError(
            f"{name}: weight of shape {tuple(weight.shape)} cannot hold {k}:{n} "
            f"groups along d_in (needs 2-D with d_in divisible by {n})."
        )
    counts = (weight != 0).reshape(weight.shape[0], -1, n).sum(-1)
    bad = (counts > k).nonzero()
    if len(bad):
        row, group = (int(v) for v in bad[0])
        raise ValueError(
            f"{name}: not {k}:{n} sparse: row {row}, inputs {group * n}..{group * n + n - 1} "
            f"hold {int(counts[row, group])} non-zeros ({len(bad)} bad groups); re-project the "
            f"mask to {k}:{n} along d_in or export this layer as dense."
        )


class CsltLinear(nn.Module):
    """``y = x W^T + b`` through cuSPARSELt with a compressed 2:4 weight.

    Args:
      weight: (d_out, d_in) 2:4-sparse CUDA weight in fp16/bf16.
      bias: (d_out,) or None.
      name: layer name for error messages.
      transpose_result: use the kernel's fused output transpose (the fast path on Hopper);
        ``False`` computes ``(W x^T)`` and transposes outside (a fallback, e.g. when the fused
        transpose is pathologically slow in fp16).
      search: pick the kernel algorithm with ``torch._cslt_sparse_mm_search`` per shape.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        name: str = "linear",
        transpose_result: bool = True,
        search: bool = True,
    ):
        super().__init__()
        check_nm(weight, name)
        ok, reason = semi_structured_eligible(*weight.shape, str(weight.dtype).split(".")[-1])
        if not ok:
            raise ValueError(f"{name}: {reason}")
        self.name, self.d_out, self.d_in = name, weight.shape[0], weight.shape[1]
        self.transpose_result, self.search = transpose_result, search
        self.register_buffer("packed", torch._cslt_compress(weight.contiguous()))
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    def _alg_id(self, xt: torch.Tensor) -> int:
        if not (self.search and hasattr(torch, "_cslt_sparse_mm_search")):
            return 0
        key = (self.d_out, self.d_in, xt.shape[1], xt.dtype, self.transpose_result)
        if key not in _ALG_CACHE:
            try:
                _ALG_CACHE[key] = int(
                    torch._cslt_sparse_mm_search(
                        self.packed, xt, bias=self.bias, transpose_result=self.transpose_result
                    )
                )
            except (RuntimeError, TypeError):  # search unsupported here: the default algorithm
                _ALG_CACHE[key] = 0
        return _ALG_CACHE[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.d_in)
        m = x2.shape[0]
        if m % 8:  # cuSPARSELt wants the dense operand's dimensions in multiples of 8
            x2 = F.pad(x2, (0, 0, 0, (-m) % 8))
        xt = x2.t()
        alg = self._alg_id(xt)
        y = torch._cslt_sparse_mm(
            self.packed, xt, bias=self.bias, transpose_result=self.transpose_result, alg_id=alg
        )
        if not self.transpose_result:
            y = y.t()
        return y[:m].reshape(*lead, self.d_out)


class SemiStructuredLinear(nn.Module):
    """``y = x W^T + b`` with ``W`` a ``torch.sparse.to_sparse_semi_structured`` tensor."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, name: str = "linear"):
        super().__init__()
        from torch.sparse import to_sparse_semi_structured

        check_nm(weight, name)
        self.d_out, self.d_in = weight.shape
        self.weight = nn.Parameter(
            to_sparse_semi_structured(weight.contiguous()), requires_grad=False
        )
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        y = F.linear(x.reshape(-1, self.d_in), self.weight, self.bias)
        return y.reshape(*lead, self.d_out)


BACKENDS = ("cslt", "wrapper", "dense")


def sparsify(model: nn.Module, names: list[str], backend: str = "cslt", **kwargs) -> nn.Module:
    """Replace the ``nn.Linear`` submodules ``names`` of ``model`` (in place) by 2:4 kernels.

    Args:
      model: module whose Linears already hold 2:4-masked fp16/bf16 CUDA weights.
      names: dotted submodule names (``blocks.0.mlp.fc1``), e.g. the manifest's sparse layers.
      backend: ``"cslt"`` (:class:`CsltLinear`), ``"wrapper"`` (:class:`SemiStructuredLinear`)
        or ``"dense"`` (leave as is: the dense endpoint with the same masked weights).
      **kwargs: passed to :class:`CsltLinear` (``transpose_result``, ``search``).

    Returns:
      ``model``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend: {backend!r}; use one of {BACKENDS}.")
    if backend == "dense":
        return model
    if REQUIRE_CUDA and names and not next(model.parameters()).is_cuda:
        raise ValueError(
            f"backend={backend!r}: 2:4 kernels need the model on a CUDA device; "
            "use backend='dense' on CPU."
        )
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        lin = getattr(parent, child)
        if not isinstance(lin, nn.Linear):
            raise ValueError(f"{name}: expected nn.Linear, got {type(lin).__name__}.")
        w, b = lin.weight.detach(), None if lin.bias is None else lin.bias.detach()
        new = (
            CsltLinear(w, b, name, **kwargs)
            if backend == "cslt"
            else SemiStructuredLinear(w, b, name)
        )
        setattr(parent, child, new)
    return model


@torch.no_grad()
def magnitude_nm_(
    model: nn.Module, names: list[str], k: int = 2, n: int = 4
) -> dict[str, torch.Tensor]:
    """Zero all but the ``k`` largest-magnitude weights of every ``n`` inputs, in place.

    Used for timing models with random weights (speed does not depend on the values).

    Returns:
      ``{name: bool mask (d_out, d_in)}``.
    """
    masks = {}
    for name in names:
        w = model.get_submodule(name).weight
        groups = w.abs().reshape(w.shape[0], -1, n)
        keep = groups.topk(k, dim=-1).indices
        mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, keep, True)
        masks[name] = mask.reshape(w.shape)
        w.mul_(masks[name])
    return masks
