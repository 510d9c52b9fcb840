"""Timing dense vs 2:4-sparse ViTs on one GPU.

Timing protocol (see `docs/method/runtime.md`): dense and sparse run in the same process,
the same precision and the same graph (ToMe on both or neither); each measurement runs
``warmup`` calls, then ``iters >= 50`` calls each bracketed by CUDA events, and reports the
median. With ``graph=True`` the forward pass is captured once in a CUDA graph (after
warm-up, so the cuSPARSELt algorithm search never runs inside capture) and replayed.

The Flax <-> torch parity check needs JAX, so it lives with the benchmark command
(:func:`mpjax.cli.bench.runtime.flax_parity`): this module imports no JAX.

On a machine without CUDA the same functions time with ``time.perf_counter`` (useful only
to test the plumbing, never reported as GPU numbers).
"""

from __future__ import annotations

import copy
import gc
import importlib.metadata
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mpjax.arch import ViTDims
from mpjax.torch_runtime import sparse as sparse_mod
from mpjax.torch_runtime.vit import TorchViT, linear_names

SPARSE_TYPES = ("qkv", "proj", "fc1", "fc2")


def time_fn(fn: Callable[[], Any], warmup: int = 10, iters: int = 50) -> dict[str, float]:
    """Median/p10/p90 milliseconds of ``fn()`` (CUDA events on GPU, perf_counter on CPU)."""
    if iters < 1:
        raise ValueError(f"iters: need >= 1, got {iters}.")
    for _ in range(warmup):
        fn()
    cuda = torch.cuda.is_available()
    ms = []
    if cuda:
        torch.cuda.synchronize()
        ev = [
            (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            for _ in range(iters)
        ]
        for start, end in ev:
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize()
        ms = [s.elapsed_time(e) for s, e in ev]
    else:
        for _ in range(iters):
            t = time.perf_counter()
            fn()
            ms.append(1e3 * (time.perf_counter() - t))
    q = np.percentile(ms, [10, 90])
    return {
        "median_ms": float(statistics.median(ms)),
        "p10_ms": float(q[0]),
        "p90_ms": float(q[1]),
        "iters": iters,
        "timer": "cuda_event" if cuda else "cpu",
    }


def capture_graph(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, warmup: int = 3):
    """Capture ``fn(x)`` in a CUDA graph; returns ``replay() -> output`` (static buffers)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            fn(x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn(x)

    def replay() -> torch.Tensor:
        graph.replay()
        return out

    return replay


def timing_models(
    dims: ViTDims,
    dtype: torch.dtype,
    device: str,
    backend: str = "cslt",
    seed: int = 0,
    **sparse_kwargs,
) -> tuple[TorchViT, TorchViT, list[str]]:
    """A random-weight ViT with 2:4 magnitude masks on qkv/proj/fc1/fc2: (dense, sparse, names).

    Both models hold the same masked weights; the sparse one runs the eligible layers through
    the 2:4 kernel. Speed does not depend on the weight values.
    """
    from mpjax.export import semi_structured_eligible

    torch.manual_seed(seed)
    dense = TorchViT(dims).to(device=device, dtype=dtype).eval()
    names = [
        n
        for n in linear_names(dense, SPARSE_TYPES)
        if semi_structured_eligible(*dense.get_submodule(n).weight.shape)[0]
    ]
    sparse_mod.magnitude_nm_(dense, names)
    sp = sparse_mod.sparsify(copy.deepcopy(dense), names, backend, **sparse_kwargs)
    return dense, sp, names


@torch.inference_mode()
def bench_pair(
    dense: TorchViT,
    sparse: TorchViT,
    x: torch.Tensor,
    tome_r: int,
    graph: bool,
    warmup: int = 10,
    iters: int = 50,
) -> dict[str, Any]:
    """Time ``dense`` and ``sparse`` on ``x`` (same ToMe ``r``, same graph mode).

    Returns:
      ``dense_ms``, ``sparse_ms``, ``dense_img_s``, ``sparse_img_s``, ``speedup`` and the
      sparse-vs-dense logit difference ``sparse_vs_dense_max_abs_diff`` (same masked
      weights, so only kernel rounding) next to the logit scale ``max_abs_logit``.
    """
    out = {}
    for label, model in (("dense", dense), ("sparse", sparse)):
        model.tome_r = tome_r
        fn = capture_graph(model, x) if graph else (lambda m=model: m(x))
        t = time_fn(fn, warmup, iters)
        out[f"{label}_ms"] = t["median_ms"]
        out[f"{label}_p10_ms"], out[f"{label}_p90_ms"] = t["p10_ms"], t["p90_ms"]
        out[f"{label}_img_s"] = x.shape[0] / (t["median_ms"] / 1e3)
        out[f"{label}_logits"] = fn().float().clone()
    ref = out.pop("dense_logits")
    diff = (ref - out.pop("sparse_logits")).abs().max()
    out["max_abs_logit"] = float(ref.abs().max())
    out["speedup"] = out["sparse_img_s"] / out["dense_img_s"]
    out["sparse_vs_dense_max_abs_diff"] = float(diff)
    out["iters"], out["timer"] = iters, t["timer"]
    return out


@torch.inference_mode()
def gemm_timings(
    shapes: list[tuple[str, int, int, int]],
    dtype: torch.dtype,
    device: str,
    warmup: int = 10,
    iters: int = 50,
) -> list[dict[str, Any]]:
    """Per-layer GEMM ``y = x W^T + b`` with ``x`` (M, K), ``W`` (N, K) 2:4: dense vs cuSPARSELt.

    Args:
      shapes: ``[(layer, M tokens, K = d_in, N = d_out)]``.

    Returns:
      One row per shape with ``dense_ms``, ``cslt_ms`` (fused transpose), ``cslt_not_ms``
      (un-fused: ``(W x^T)^T``) and the speedups; a variant whose first call takes over 20x
      the dense GEMM (+5 ms) is timed with 3 calls only and flagged ``*_pathological``.
    """
    rows = []
    for name, m, k, n in shapes:
        x = torch.randn(m, k, device=device, dtype=dtype)
        lin = torch.nn.Linear(k, n, device=device, dtype=dtype)
        sparse_mod.magnitude_nm_(lin, [""])
        w, b = lin.weight.detach(), lin.bias.detach()
        row = {
            "layer": name,
            "M": m,
            "K": k,
            "N": n,
            "dense_ms": time_fn(lambda x=x, w=w, b=b: F.linear(x, w, b), warmup, iters)[
                "median_ms"
            ],
        }
        for label, tr in (("cslt_ms", True), ("cslt_not_ms", False)):
            # Probe one call without the algorithm search: a pathologically slow variant (fp16
            # fused transpose, `docs/method/runtime.md`) is timed with 3 calls only, and flagged.
            layer = sparse_mod.CsltLinear(w, b, name, transpose_result=tr, search=False)
            probe = time_fn(lambda L=layer, x=x: L(x), 1, 1)["median_ms"]
            if probe > 20 * row["dense_ms"] + 5.0:
                row[label] = time_fn(lambda L=layer, x=x: L(x), 0, 3)["median_ms"]
                row[label.replace("_ms", "_pathological")] = True
                continue
            layer.search = True
            row[label] = time_fn(lambda L=layer, x=x: L(x), warmup, iters)["median_ms"]
        row["speedup"] = row["dense_ms"] / row["cslt_ms"]
        row["speedup_not"] = row["dense_ms"] / row["cslt_not_ms"]
        rows.append(row)
    return rows


def block_shapes(dims: ViTDims, batch: int) -> list[tuple[str, int, int, int]]:
    """The four block GEMMs of block 0 at ``batch`` images (no ToMe)."""
    m, d, h = batch * dims.tokens, dims.hidden, dims.mlp
    return [("qkv", m, d, 3 * d), ("proj", m, d, d), ("fc1", m, d, h), ("fc2", m, h, d)]


def torch_dtype(name: str) -> torch.dtype:
    """``"float16"`` -> ``torch.float16`` (and so on)."""
    return getattr(torch, name)


def random_images(dims: ViTDims, batch: int, dtype: torch.dtype, device: str):
    """``batch`` random NCHW images of the model's size."""
    shape = (batch, dims.channels, dims.image_size, dims.image_size)
    return torch.randn(shape, device=device, dtype=dtype)


def free_memory(device: str) -> None:
    """Release cached memory between models."""
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def cuda_device_name() -> str | None:
    """Name of CUDA device 0, or ``None`` without CUDA."""
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def versions() -> dict[str, str | None]:
    """Library versions (torch, CUDA, cuSPARSELt, numpy, jax, mpjax, python).

    JAX's version is read from the installed package's metadata (``None`` when it is not
    installed): JAX itself is never imported here.
    """
    from mpjax import __version__

    out: dict[str, str | None] = {
        "mpjax": __version__,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "cusparselt": None,
        "jax": None,
    }
    try:
        v = torch.backends.cusparselt.version()
        out["cusparselt"] = None if v is None else str(v)
    except (AttributeError, RuntimeError):
        pass
    try:
        out["jax"] = importlib.metadata.version("jax")
    except importlib.metadata.PackageNotFoundError:
        pass
    return out
