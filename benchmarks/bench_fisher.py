"""Benchmark: diagonal Fisher of a CIFAR ResNet20 versus a training step.

Prints one JSON object per line (compare runs with ``jq`` or pandas):

* ``fisher``: examples/s of ``fisher_diag`` per path (per_layer, vmap);
* ``train_step``: examples/s of a plain SGD training step (BatchNorm in
  training mode) over the same examples and batch size;
* ``loop``: an explicit per-example loop (batch of one, jitted gradient,
  accumulated on the host side), timed on ``--loop-n`` examples;
* ``memory``: XLA's buffer sizes of the compiled Fisher block at two chunk sizes;
* ``ratios``: ``fisher_over_train_ratio`` (time of the Fisher over the time of
  training, both over N examples; 1.0 = as fast as training) and others, all
  measured in this run.

Usage: python benchmarks/bench_fisher.py [--n 1024] [--batch 128] [--reps 3]
"""

from __future__ import annotations

import os

if "--default-xla-flags" in os.sys.argv:   # measure XLA's defaults: fmjax adds no flag
  os.environ["FMJAX_CPU_XLA_FLAG"] = "0"

import argparse  # noqa: E402
import platform  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _timing import emit, timed  # noqa: E402 -- benchmarks/ is the script's directory

import fmjax  # noqa: E402
from fmjax.models import resnet20  # noqa: E402
from fmjax.steps import init_train_state, sgd, train_step  # noqa: E402
from fmjax.xla_flags import configure as configure_xla_flags  # noqa: E402

configure_xla_flags()   # this script is an entry point: before any computation


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--n", type=int, default=1024, help="examples per timed pass")
  parser.add_argument("--batch", type=int, default=128, help="batch size")
  parser.add_argument("--reps", type=int, default=3, help="timed repetitions (median)")
  parser.add_argument("--loop-n", type=int, default=64,
                      help="examples for the explicit per-example loop (0 skips it)")
  parser.add_argument("--paths", default="per_layer,vmap", help="Fisher paths to time")
  parser.add_argument("--memory-chunks", default="32,128",
                      help="two chunk sizes for the memory figures")
  parser.add_argument("--default-xla-flags", action="store_true",
                      help="do not add fmjax's CPU flag (fmjax/xla_flags.py)")
  args = parser.parse_args()
  if args.n % args.batch:
    parser.error(f"--n ({args.n}) must be a multiple of --batch ({args.batch})")

  key = jax.random.key(0)
  images = jax.random.normal(key, (args.n, 32, 32, 3))
  labels = jax.random.randint(jax.random.key(1), (args.n,), 0, 10)
  batches = [{"image": images[i:i + args.batch], "label": labels[i:i + args.batch]}
             for i in range(0, args.n, args.batch)]
  model = resnet20(10)
  tx = sgd(0.1, momentum=0.9, weight_decay=1e-4)
  state = init_train_state(model, tx, jax.random.key(2), (1, 32, 32, 3))
  params, model_state = state.params, state.model_state
  emit({"bench": "setup", "model": "resnet20", "params": int(sum(
      p.size for p in jax.tree.leaves(params))), "n": args.n, "batch": args.batch,
      "backend": jax.default_backend(), "device": str(jax.devices()[0]),
      "cpu_count": os.cpu_count(), "machine": platform.machine(), "jax": jax.__version__,
      "xla_flags": os.environ.get("XLA_FLAGS", "")})

  step = jax.jit(lambda s, b: train_step(model, tx, s, b))

  def train_pass():
    s = state
    for b in batches:
      s, _ = step(s, b)
    return s.params

  t_train = timed(train_pass, args.reps)
  emit({"bench": "train_step", "examples_per_s": args.n / t_train, "seconds": t_train})

  t_fisher = {}
  for path in args.paths.split(","):
    fisher_diag = fmjax.make_fisher_diag(model, model_state, path=path, chunk_size=args.batch)
    info = fisher_diag.describe(params, batches[0])
    t = timed(lambda fd=fisher_diag: fmjax.accumulate_fisher_diag(fd, params, batches).total,
              args.reps)
    t_fisher[path] = t
    emit({"bench": "fisher", "path": info.path, "requested": path,
          "examples_per_s": args.n / t, "seconds": t, "chunk_size": args.batch,
          "fallback_reason": info.reason})

  if args.loop_n:
    def log_p(p, x, y):
      logits = model.apply({"params": p, **model_state}, x[None], train=False)
      return jax.nn.log_softmax(logits)[0, y]

    grad_one = jax.jit(jax.grad(log_p))
    square_add = jax.jit(lambda acc, g: jax.tree.map(lambda a, b: a + b * b, acc, g))

    def loop():
      acc = jax.tree.map(jnp.zeros_like, params)
      for i in range(args.loop_n):
        acc = square_add(acc, grad_one(params, images[i], labels[i]))
      return acc

    t = timed(loop, max(1, args.reps - 1))
    emit({"bench": "loop", "examples_per_s": args.loop_n / t, "seconds": t,
          "n": args.loop_n})
    t_loop_n = t / args.loop_n * args.n
  else:
    t_loop_n = None

  for chunk in (int(c) for c in args.memory_chunks.split(",")):
    fisher_diag = fmjax.make_fisher_diag(model, model_state, chunk_size=chunk)
    # A block of `chunk` examples, repeated when --n is smaller (only shapes matter here).
    block = (params, model_state, jnp.resize(images, (chunk, *images.shape[1:])),
             jnp.resize(labels, (chunk,)), jnp.ones(chunk))
    mem = fisher_diag.kernel.lower(*block).compile().memory_analysis()
    emit({"bench": "memory", "chunk_size": chunk,
          "temp_mib": mem.temp_size_in_bytes / 2**20,
          "peak_mib": (mem.temp_size_in_bytes + mem.argument_size_in_bytes
                       + mem.output_size_in_bytes) / 2**20})

  best = min(t_fisher.values())
  ratios = {"bench": "ratios", "fisher_over_train_ratio": best / t_train}
  if "per_layer" in t_fisher and "vmap" in t_fisher:
    ratios["vmap_over_per_layer_ratio"] = t_fisher["vmap"] / t_fisher["per_layer"]
  if t_loop_n is not None:
    ratios["loop_over_fisher_ratio"] = t_loop_n / best
  emit(ratios)
  np.testing.assert_array_less(0, best)


if __name__ == "__main__":
  main()
