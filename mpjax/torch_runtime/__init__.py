"""PyTorch runtime for mpjax exports: the only part of mpjax that imports torch.

* :mod:`~mpjax.torch_runtime.vit`: a timm-layout ViT with ToMe (same algorithm as
  :mod:`mpjax.models.tome`);
* :mod:`~mpjax.torch_runtime.manifest`: load and validate an export, rebuild the model;
* :mod:`~mpjax.torch_runtime.sparse`: 2:4 Linears on cuSPARSELt (compressed once);
* :mod:`~mpjax.torch_runtime.bench`: CUDA-event timing, CUDA graphs, dense vs sparse.
"""

from mpjax.torch_runtime.manifest import (
    Export,
    ManifestError,
    build_model,
    load_export,
    read_manifest,
    sparse_layers,
)
from mpjax.torch_runtime.sparse import CsltLinear, SemiStructuredLinear, check_nm, sparsify
from mpjax.torch_runtime.vit import TorchViT, merge_tokens

__all__ = [
    "CsltLinear",
    "Export",
    "ManifestError",
    "SemiStructuredLinear",
    "TorchViT",
    "build_model",
    "check_nm",
    "load_export",
    "merge_tokens",
    "read_manifest",
    "sparse_layers",
    "sparsify",
]
