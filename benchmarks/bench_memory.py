"""Benchmark: the compiled scoring programs' memory for the paper's (dataset, model) pairs.

For each pair of Figure 2 (:data:`experiments.class_removal.PAIRS`) and each scoring
pass that grows with the model or the class count, at its method's default batch:

* ``fisher`` -- FisherMask's empirical Fisher block (``fisher_chunk`` examples);
* ``true fisher`` -- FisherNoise's true Fisher block (a sum over every class: in chunks
  of 10 classes, :mod:`fmjax.fisher`);
* ``integrated gradients`` -- GradMask's integrated gradients of every conv layer at
  ``ig_steps`` steps for one scoring batch (``score_batch_size`` examples), ONE program.

Each program is lowered from abstract inputs and compiled (nothing runs); XLA's memory
analysis gives its temporary (scratch) bytes and its argument bytes; the table also
counts the programs compiled for the pass. The figures are for the backend this runs
on: the CPU's compiler is not the GPU's, so on a CPU they estimate the GPU peak (the
paper's RTX 3090 has 24 GB) without measuring it.

Usage: python benchmarks/bench_memory.py [--pairs cifar10/resnet20,...] [--passes fisher,...]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))   # experiments/

PASSES = ("fisher", "true fisher", "integrated gradients")


def _abstract(tree):
  import jax
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), tree)


def program(dataset: str, model_name: str, kind: str):
  """``(jitted function, abstract arguments)`` of one scoring pass."""
  import jax
  import jax.numpy as jnp

  from fmjax import data
  from fmjax.fisher import make_fisher_diag
  from fmjax.methods import FisherMask, GradMask, _channels
  from fmjax.models import get_model

  info = data.DATASETS[dataset]
  model = get_model(model_name, info.num_classes)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0),
                                                jnp.zeros((1,) + info.image_shape)))
  params = variables["params"]
  state = {k: v for k, v in variables.items() if k != "params"}
  if kind in ("fisher", "true fisher"):
    b = FisherMask.fisher_chunk
    fd = make_fisher_diag(model, _abstract(state), kind="empirical" if kind == "fisher"
                          else "true", chunk_size=b)
    args = (params, state, jax.ShapeDtypeStruct((b,) + info.image_shape, jnp.float32),
            jax.ShapeDtypeStruct((b,), jnp.int32), jax.ShapeDtypeStruct((b,), jnp.float32))
    return fd.kernel, args
  b = GradMask.score_batch_size
  layers = _channels.channel_layers(model, variables, info.image_shape, {"train": False})
  ig = _channels.make_integrated_gradients(model, {"train": False}, layers, GradMask.ig_steps)
  return ig, (variables, jax.ShapeDtypeStruct((b,) + info.image_shape, jnp.float32),
              jax.ShapeDtypeStruct((b,), jnp.int32))


def measure(dataset: str, model_name: str, kind: str) -> dict:
  import jax
  compiles = []
  jax.monitoring.register_event_duration_secs_listener(
      lambda event, secs, **kw: compiles.append(event)
      if event == "/jax/core/compile/backend_compile_duration" else None)
  fn, args = program(dataset, model_name, kind)
  start = time.perf_counter()
  compiled = fn.lower(*args).compile()
  seconds = time.perf_counter() - start
  mem = compiled.memory_analysis()
  return {"dataset": dataset, "model": model_name, "pass": kind,
          "temp_gb": None if mem is None else mem.temp_size_in_bytes / 2**30,
          "argument_gb": None if mem is None else mem.argument_size_in_bytes / 2**30,
          "programs": len(compiles), "compile_s": seconds,
          "backend": jax.default_backend()}


def main(argv=None) -> int:
  from experiments.class_removal import PAIRS
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--pairs", default=None, help="dataset/model,... (default: all 16)")
  p.add_argument("--passes", default=",".join(PASSES), help=f"of {', '.join(PASSES)}")
  args = p.parse_args(argv)
  pairs = PAIRS if args.pairs is None else tuple(tuple(x.split("/")) for x in
                                                 args.pairs.split(","))
  passes = tuple(args.passes.split(","))
  bad = [x for x in passes if x not in PASSES] + [f"{d}/{m}" for d, m in pairs
                                                   if (d, m) not in PAIRS]
  if bad:
    print(f"error: unknown pass or pair {bad}; passes: {PASSES}; pairs: "
          f"{['/'.join(x) for x in PAIRS]}", file=sys.stderr)
    return 2
  from fmjax import xla_flags
  xla_flags.configure()
  rows = []
  for dataset, model_name in pairs:
    for kind in passes:
      row = measure(dataset, model_name, kind)
      print(json.dumps(row), flush=True)
      rows.append(row)
  print("\n| dataset | model | pass | temporary (GB) | arguments (GB) | programs | compile (s) |")
  print("|---|---|---|---:|---:|---:|---:|")
  for r in rows:
    print(f"| {r['dataset']} | {r['model']} | {r['pass']} | {r['temp_gb']:.2f} | "
          f"{r['argument_gb']:.3f} | {r['programs']} | {r['compile_s']:.0f} |")
  worst = max(rows, key=lambda r: r["temp_gb"])
  print(f"\nlargest: {worst['dataset']}/{worst['model']} {worst['pass']}: "
        f"{worst['temp_gb']:.2f} GB of temporaries on {worst['backend']} "
        f"({'fits' if worst['temp_gb'] < 24 else 'does NOT fit'} in 24 GB)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
