"""The GPU check: the figures the README quotes for a machine with a GPU.

Run by ``benchmarks/gpu_check.sh`` on whatever accelerator JAX sees (it runs
on a CPU too, slowly, with ``--n`` small). Prints one JSON object per line:

* ``epoch``: ResNet20 training on CIFAR-shaped data (uint8 32x32x3 on the
  device, gathered, normalised and split across all devices per step), batch
  128: seconds per epoch of ``--n`` examples and examples/s;
* ``fisher``: one Fisher pass over ``--n`` examples on each path (per_layer,
  vmap) and the one ``path='auto'`` picks on this backend: examples/s;
* ``host_overhead``: seconds per step the host adds: the same ``--steps``
  training steps dispatched one by one from Python, minus the same steps run
  as one ``lax.scan`` program (one dispatch), divided by ``--steps``.

Usage: python benchmarks/gpu_check.py [--n 50000] [--batch 128] [--steps 100]
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

import fmjax
from fmjax import data, finetuning, sharding, steps
from fmjax.models import get_model
from fmjax.runner import Runner
from fmjax.xla_flags import configure as configure_xla_flags

configure_xla_flags()   # this script is an entry point: before any computation

MEAN = np.array([0.49, 0.48, 0.45], np.float32)
STD = np.array([0.25, 0.24, 0.26], np.float32)


def emit(record: dict) -> None:
  print(json.dumps(record), flush=True)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--n", type=int, default=50_000)
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--chunk", type=int, default=256, help="Fisher examples per device block")
  parser.add_argument("--steps", type=int, default=100)
  args = parser.parse_args()
  emit({"bench": "machine", "backend": jax.default_backend(), "devices": len(jax.devices()),
        "device_kind": jax.devices()[0].device_kind, "jax": jax.__version__})
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (args.n, 32, 32, 3), dtype=np.uint8)
  labels = rng.integers(0, 10, args.n).astype(np.int32)
  model = get_model("resnet20", 10)
  opt = steps.sgd(0.1, momentum=0.9, weight_decay=1e-4)
  init = steps.init_train_state(model, opt, jax.random.key(0), (1, 32, 32, 3))
  mesh = sharding.mesh_or_none(None)
  proc = finetuning.finetune_procedure(0.1, batch_size=args.batch, momentum=0.9,
                                       weight_decay=1e-4)
  x, y = sharding.replicate((jnp.asarray(images), jnp.asarray(labels)), mesh)
  runner = Runner(model, proc, x, y, {"remain": np.arange(args.n)}, mean=MEAN, std=STD,
                  seed=0, mesh=mesh)
  step = runner.step_fns[0]
  state = sharding.replicate(init, mesh)
  order = rng.permutation(args.n)
  n_steps = runner.steps(1)

  def epoch(state):
    return runner.epoch(state, 1)[0]

  jax.block_until_ready(epoch(state).params)   # compiles, warms up
  start = time.perf_counter()
  jax.block_until_ready(epoch(state).params)
  seconds = time.perf_counter() - start
  emit({"bench": "epoch", "model": "resnet20", "examples": n_steps * args.batch,
        "batch": args.batch, "devices": 1 if mesh is None else mesh.size,
        "seconds": seconds, "examples_per_s": n_steps * args.batch / seconds})

  batch = {"image": data.normalize(jnp.asarray(images), MEAN, STD), "label": labels}
  for path in ("per_layer", "vmap", "auto"):
    fd = fmjax.make_fisher_diag(model, init.model_state, path=path, chunk_size=args.chunk)
    jax.block_until_ready(fd.sum(init.params, {k: v[:args.chunk] for k, v in
                                                 batch.items()}).total)
    start = time.perf_counter()
    jax.block_until_ready(fd.sum(init.params, batch).total)
    seconds = time.perf_counter() - start
    emit({"bench": "fisher", "path": path,
          "runs": fd.describe(init.params, {k: v[:2] for k, v in batch.items()}).path,
          "examples": args.n, "chunk": args.chunk, "seconds": seconds,
          "examples_per_s": args.n / seconds})

  # Host overhead per step: Python dispatch of each step versus one scanned program.
  idx = jnp.asarray(order[:args.steps * args.batch].reshape(args.steps, args.batch))
  keys = jax.random.split(jax.random.key(1), args.steps)

  @jax.jit
  def scan_steps(state, x, y, idx, keys):   # data as arguments, never baked-in constants
    def body(s, inputs):
      i, k = inputs
      batch = steps.gather_batch(x, y, i, k, MEAN, STD, augment=False, mesh=mesh)
      return steps.train_step(model, opt, s, batch)[0], None
    return jax.lax.scan(body, state, (idx, keys))[0]

  def scanned(state):
    return scan_steps(state, x, y, idx, keys)

  def dispatched(state):
    for t in range(args.steps):
      state, _ = step(state, None, x, y, idx[t], None, keys[t], np.float32(0.1),
                      np.float32(0), None, MEAN, STD)
    return state

  timings = {}
  for name, fn in (("scan", scanned), ("dispatch", dispatched)):
    jax.block_until_ready(fn(state).params)
    start = time.perf_counter()
    jax.block_until_ready(fn(state).params)
    timings[name] = time.perf_counter() - start
  emit({"bench": "host_overhead", "steps": args.steps, "batch": args.batch,
        "dispatched_s": timings["dispatch"], "scanned_s": timings["scan"],
        "overhead_per_step_ms": 1000 * (timings["dispatch"] - timings["scan"]) / args.steps})


if __name__ == "__main__":
  main()
