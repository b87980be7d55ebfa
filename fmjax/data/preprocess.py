"""On-device preprocessing, called inside jitted steps: normalise and augment."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def normalize(images: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
  """uint8 [B, H, W, C] -> float32 ``(x / 255 - mean) / std`` per channel."""
  return (images.astype(jnp.float32) / 255.0 - mean) / std


def augment(key: jax.Array, images: jax.Array, *, pad: int = 4, flip: bool = True
            ) -> jax.Array:
  """Random crop after zero-padding by ``pad`` pixels, and random horizontal flip.

  The standard CIFAR augmentation (He et al. 2016). Shapes: [B, H, W, C] -> same.
  """
  b, h, w, _ = images.shape
  k_crop, k_flip = jax.random.split(key)
  padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  offsets = jax.random.randint(k_crop, (b, 2), 0, 2 * pad + 1)

  def crop(img, off):
    return jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, img.shape[-1]))

  out = jax.vmap(crop)(padded, offsets)
  if flip:
    flips = jax.random.bernoulli(k_flip, 0.5, (b,))
    out = jnp.where(flips[:, None, None, None], out[:, :, ::-1, :], out)
  return out
