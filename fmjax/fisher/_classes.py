"""The true Fisher's sum over classes, in a loop over the classes.

Both paths compute ``sum_c p(c|x) (d log p(c|x) / d w)^2`` with one backward pass per
class. Batched over all K classes at once, a path holds K copies of its largest
intermediate (per-example gradients, or every layer's output gradients): linear in K, so
even a 10-class head asks for ten times the empirical Fisher's memory (GoogLeNet on
CIFAR-10 at the default chunk of 32 examples: 75 GB of temporaries, measured with
``make bench-memory``). The passes therefore run in a ``lax.scan`` over the classes, one
class a step: the true Fisher's block then holds what the empirical Fisher's does,
whatever the class count.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

# Classes per step of the loop: the memory holds this many classes' output gradients.
CLASSES_PER_STEP = 1


def class_chunked(fn, num_classes: int, per_step: int = CLASSES_PER_STEP) -> Any:
  """``fn(arange(K))`` summed over a loop of ``per_step`` classes a step.

  ``fn`` maps class indices ``[k]`` to a pytree that is a sum over those classes; an index
  equal to ``num_classes`` pads the last step and must contribute zero (``one_hot`` of it
  is a zero row). The memory of the true Fisher then does not grow with the number of
  classes (a 100-class head would otherwise hold [100, B, ...] output gradients per
  layer).
  """
  n = -(-num_classes // per_step)
  blocks = jnp.minimum(jnp.arange(n * per_step), num_classes).reshape(n, per_step)
  total, _ = lax.scan(lambda acc, c: (jax.tree.map(jnp.add, acc, fn(c)), None), fn(blocks[0]),
                      blocks[1:])
  return total
