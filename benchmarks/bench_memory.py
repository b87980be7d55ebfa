"""Benchmark: the compiled scoring programs' memory for the paper's (dataset, model) pairs.

For each pair of Figure 2 (:data:`experiments.class_removal.PAIRS`) and each scoring
pass that grows with the model or the class count, at its method's default batch:

* ``fisher`` -- FisherMask's empirical Fisher block (``fisher_chunk`` examples: 128, 32
  on Tiny-ImageNet's 64x64 images, :func:`fmjax.methods.base.examples_per_block`);
* ``true fisher`` -- FisherNoise's true Fisher block (a sum over every class, in a loop
  of one class a step at any class count, :mod:`fmjax.fisher`);
* ``integrated gradients`` -- GradMask's integrated gradients of every conv layer at
  ``ig_steps`` steps for one scoring batch (``score_batch_size`` examples: 256, 64 on
  Tiny-ImageNet), ONE program.

Each program is lowered from abstract inputs and compiled (nothing runs); XLA's memory
analysis gives its temporary (scratch) bytes and its argument bytes; the table also
counts the programs compiled for the pass. The figures are for the backend this runs
on: the CPU's compiler is not the GPU's, so on a CPU they estimate the GPU peak (the
paper's RTX 3090 has 24 GB) without measuring it.

Each row is measured in a fresh process. Usage: python benchmarks/bench_memory.py
[--pairs cifar10/resnet20,...] [--passes fisher,...] (--rows FILE: the table of rows it
printed before).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
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
    b = FisherMask().fisher_block(info.image_shape)
    fd = make_fisher_diag(model, _abstract(state), kind="empirical" if kind == "fisher"
                          else "true", chunk_size=b)
    args = (params, state, jax.ShapeDtypeStruct((b,) + info.image_shape, jnp.float32),
            jax.ShapeDtypeStruct((b,), jnp.int32), jax.ShapeDtypeStruct((b,), jnp.float32))
    return fd.kernel, args
  b = GradMask().score_block(info.image_shape)
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
  p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
  p.add_argument("--rows", default=None, help="a file of JSON rows this printed: only the "
                 "table, from them (no measurement)")
  args = p.parse_args(argv)
  if args.rows:
    print(table([json.loads(x) for x in pathlib.Path(args.rows).read_text().splitlines()
                 if x.startswith("{")]))
    return 0
  pairs = PAIRS if args.pairs is None else tuple(tuple(x.split("/")) for x in
                                                 args.pairs.split(","))
  passes = tuple(args.passes.split(","))
  bad = [x for x in passes if x not in PASSES] + [f"{d}/{m}" for d, m in pairs
                                                   if (d, m) not in PAIRS]
  if bad:
    print(f"error: unknown pass or pair {bad}; passes: {PASSES}; pairs: "
          f"{['/'.join(x) for x in PAIRS]}", file=sys.stderr)
    return 2
  if args.one:   # one measurement in this process (the parent's subprocess)
    from fmjax import xla_flags
    xla_flags.configure()
    (dataset, model_name), = pairs
    print(json.dumps(measure(dataset, model_name, passes[0])), flush=True)
    return 0
  rows = []
  for dataset, model_name in pairs:
    for kind in passes:
      row = _isolated(dataset, model_name, kind)
      print(json.dumps(row), flush=True)
      rows.append(row)
  print(table(rows))
  return 0


def _isolated(dataset: str, model_name: str, kind: str) -> dict:
  """``measure`` in a fresh process, as a run compiles it: no program compiled for an
  earlier row shares its memory (the JIT code of a few dozen large programs in one process
  once exhausted it); a process that fails gives a row with its last line as ``error``."""
  out = subprocess.run([sys.executable, __file__, "--one", "--pairs", f"{dataset}/{model_name}",
                        "--passes", kind], capture_output=True, text=True)
  lines = [x for x in out.stdout.splitlines() if x.startswith("{")]
  if out.returncode == 0 and lines:
    return json.loads(lines[-1])
  last = (out.stderr.strip().splitlines() or ["(no output)"])[-1]
  return {"dataset": dataset, "model": model_name, "pass": kind, "error":
          f"exit {out.returncode}: {last}"}


def table(rows: list[dict], budget_gb: float = 24.0) -> str:
  """One row per (dataset, model), per pass its temporaries + arguments in GB and its
  programs compiled; then the largest and the pairs over ``budget_gb`` (the paper's GPU)."""
  passes = list(dict.fromkeys(r["pass"] for r in rows))
  failed = [r for r in rows if "error" in r]
  rows = [r for r in rows if "error" not in r]
  by_pair = {}
  for r in rows:
    by_pair.setdefault((r["dataset"], r["model"]), {})[r["pass"]] = r
  total = lambda r: r["temp_gb"] + r["argument_gb"]
  lines = ["", "| dataset | model | " + " | ".join(f"{p} (GB)" for p in passes)
           + " | programs | compile (s) |", "|---|---|" + "---:|" * (len(passes) + 2)]
  for r in failed:
    by_pair.setdefault((r["dataset"], r["model"]), {})
  broken = {(r["dataset"], r["model"], r["pass"]) for r in failed}
  for (dataset, model), got in by_pair.items():
    lines.append(f"| {dataset} | {model} | " + " | ".join(
        f"{total(got[p]):.2f}" if p in got else
        "failed" if (dataset, model, p) in broken else "–" for p in passes)
        + f" | {' / '.join(str(got[p]['programs']) for p in passes if p in got)} | "
        + f"{sum(got[p]['compile_s'] for p in passes if p in got):.0f} |")
  lines += [f"failed: {r['dataset']}/{r['model']} {r['pass']}: {r['error']}" for r in failed]
  if not rows:
    return "\n".join(lines)
  worst = max(rows, key=total)
  over = sorted({f"{r['dataset']}/{r['model']} {r['pass']}" for r in rows
                 if total(r) >= budget_gb})
  lines += ["", f"GB = XLA's temporaries + the program's arguments, on {worst['backend']}; "
            f"programs compiled per pass ({' / '.join(passes)}).",
            f"largest: {worst['dataset']}/{worst['model']} {worst['pass']}, "
            f"{total(worst):.2f} GB; " + (f"every pass of every pair fits in {budget_gb:g} GB."
                                          if not over else
                                          f"over {budget_gb:g} GB: {', '.join(over)}.")]
  return "\n".join(lines)


if __name__ == "__main__":
  sys.exit(main())
