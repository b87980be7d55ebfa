"""The true Fisher's sum over classes, a chunk of classes at a time.

Both paths compute ``sum_c p(c|x) (d log p(c|x) / d w)^2`` with one backward pass per
class. Batched over all K classes at once, a path holds K copies of its largest
intermediate (per-example gradients, or every layer's output gradients): linear in K, so
a 100-class head asks for ten times the memory of a 10-class one. Above
:data:`CLASS_CHUNK` classes the passes run in a ``lax.scan`` over chunks instead.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

# Up to CLASS_CHUNK classes go in one batched backward pass; more loop, CLASSES_PER_STEP
# classes a step: the memory then holds one class's output gradients, whatever the count
# (measured with `make bench-memory`: GoogLeNet on CIFAR-100 needed 79 GB of temporaries
# at 10 classes a step).
CLASS_CHUNK = 10
CLASSES_PER_STEP = 1


def class_chunked(fn, num_classes: int, per_step: int = CLASSES_PER_STEP) -> Any:
  """``fn(arange(K))`` summed over a loop of ``per_step`` classes a step.

  ``fn`` maps class indices ``[k]`` to a pytree that is a sum over those classes; an index
  equal to ``num_classes`` pads the last step and must contribute zero (``one_hot`` of it
  is a zero row). The callers batch up to :data:`CLASS_CHUNK` classes in one pass (their
  programs of before) and loop here above it, so the memory of the true Fisher does not
  grow with the number of classes (a 100-class head would otherwise hold
  [100, B, ...] output gradients per layer).
  """
  n = -(-num_classes // per_step)
  blocks = jnp.minimum(jnp.arange(n * per_step), num_classes).reshape(n, per_step)
  total, _ = lax.scan(lambda acc, c: (jax.tree.map(jnp.add, acc, fn(c)), None), fn(blocks[0]),
                      blocks[1:])
  return total
