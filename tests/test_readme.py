"""The README's research-code example runs verbatim and does what it says."""

from __future__ import annotations

import pathlib
import re

import jax
import numpy as np

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def _example() -> str:
  text = README.read_text()
  block = re.search(r"<!-- example:start -->\s*```python\n(.*?)```\s*<!-- example:end -->",
                    text, re.S)
  assert block, "README.md lost its example block"
  return block.group(1)


def test_readme_example_runs():
  scope: dict = {}
  exec(compile(_example(), str(README), "exec"), scope)  # noqa: S102
  params, mask, unlearned = scope["params"], scope["mask"], scope["unlearned"]
  total = sum(p.size for p in jax.tree.leaves(params))
  assert sum(int(m.sum()) for m in jax.tree.leaves(mask)) == round(0.02 * total)
  for m, u in zip(jax.tree.leaves(mask), jax.tree.leaves(unlearned), strict=True):
    np.testing.assert_array_equal(np.asarray(u)[np.asarray(m)], 0.0)
  assert scope["fisher_diag"].describe(params, {"image": scope["x"], "label": scope["y"]}
                                       ).path == "per_layer"
  assert float(scope["lr"](0)) == np.float32(0.1)
