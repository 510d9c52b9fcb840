"""The model input every training and evaluation path shares: pixels as float32 images.

Models in mpjax take float32 ``[B, H, W, C]`` images in ``[0, 1]``. Datasets hold integer
pixels, often without a channel axis (``[B, H, W]`` for Fashion-MNIST); :func:`prepare_images`
is the one place that converts them, used by the training step, :func:`evaluate
<mpjax.training.evaluation.evaluate>`, the prune job and the certificates.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = [
    "prepare_images",
]


def prepare_images(images: jax.Array) -> jax.Array:
    """Model input: integer pixels divided by 255 as float32; ``[B, H, W]`` gets a channel axis.

    Float images pass through unchanged (no rescaling), so the function is idempotent.

    Args:
      images: ``[B, H, W]`` or ``[B, H, W, C]``, integer pixels in ``[0, 255]`` or floats.

    Returns:
      ``[B, H, W, C]`` (``C = 1`` for a 3-d input); float32 ``pixels / 255`` for integer input.

    Examples:
      >>> import numpy as np
      >>> x = prepare_images(np.full((2, 4, 4), 255, np.uint8))
      >>> x.shape, str(x.dtype), float(x.max())
      ((2, 4, 4, 1), 'float32', 1.0)
    """
    x = jnp.asarray(images)
    if jnp.issubdtype(x.dtype, jnp.integer):
        x = x.astype(jnp.float32) / 255.0
    return x[..., None] if x.ndim == 3 else x
