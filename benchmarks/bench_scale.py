"""Benchmark: the Fisher pass and training over 1, 2, 4 and 8 devices; peak memory in N.

Prints one JSON object per line, then a Markdown table:

* ``fisher``: examples/s of ``fisher_diag.sum`` (path ``auto``) over ``--n``
  examples, for every device count of ``--devices``, with the speed-up over
  one device measured in the same run;
* ``train``: examples/s of the jitted training step (batch ``--batch``
  gathered on the devices from replicated uint8 images, split across the
  devices, SGD with momentum) over the same examples;
* ``stacked_units``: fine-tuning epochs of K = 1, 3, 9 units on one device, as K
  separate programs and as one stacked program (``vmap`` over units), all
  units' examples/s;
* ``memory``: the peak host memory (resident set) and, where the backend
  reports it, the peak device memory of a fresh process that runs the Fisher
  pass over N = 1k, 4k and 16k examples streamed in batches. The Fisher works
  in blocks of ``chunk`` examples, so both stay flat in N.

On a CPU the devices are forced host devices (``--cpu-devices 8``): they share
this machine's cores, so the figures measure correctness and the overhead of
splitting, not a speed-up; on a machine with several GPUs pass
``--cpu-devices 0`` to measure the real devices.

Usage: python benchmarks/bench_scale.py [--n 512] [--batch 128] [--devices 1,2,4,8]
"""

from __future__ import annotations

import os
import sys


def _force_cpu_devices(argv: list[str]) -> None:
  """Forces N host devices before JAX starts (``--cpu-devices N``, default 8; 0 = off)."""
  n = 8
  if "--cpu-devices" in argv:
    n = int(argv[argv.index("--cpu-devices") + 1])
  if n > 0:
    from fmjax.xla_flags import host_devices  # no backend starts on import
    os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " +
                               host_devices(n)).strip()


_force_cpu_devices(sys.argv)

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _timing import emit, timed  # noqa: E402 -- benchmarks/ is the script's directory

import fmjax  # noqa: E402
from fmjax import data, finetuning, sharding, steps  # noqa: E402
from fmjax.models import get_model  # noqa: E402
from fmjax.runner import Runner, stack  # noqa: E402
from fmjax.xla_flags import configure as configure_xla_flags  # noqa: E402

configure_xla_flags()   # this script is an entry point: before any computation

MEAN, STD = np.array([0.49, 0.48, 0.45], np.float32), np.array([0.25, 0.24, 0.26], np.float32)


def cifar_like(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  rng = np.random.default_rng(seed)
  return (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
          rng.integers(0, 10, n).astype(np.int32))


def _procedure(batch: int):
  return finetuning.finetune_procedure(0.01, batch_size=batch, momentum=0.9,
                                       weight_decay=1e-4)


def _init(model):
  return steps.init_train_state(model, steps.sgd(momentum=0.9, weight_decay=1e-4),
                                jax.random.key(0), (1, 32, 32, 3))


def throughput(args) -> list[dict]:
  model = get_model(args.model, 10)
  init = _init(model)
  images, labels = cifar_like(args.n)
  batch = {"image": data.normalize(jnp.asarray(images), MEAN, STD), "label": labels}
  rows = []
  for n in args.devices:
    mesh = sharding.mesh_or_none(n)
    fd = fmjax.make_fisher_diag(model, init.model_state, chunk_size=args.chunk, devices=n)
    fisher_s = timed(lambda fd=fd: fd.sum(init.params, batch).total, args.reps)
    x, y = sharding.replicate((jnp.asarray(images), jnp.asarray(labels)), mesh)
    runner = Runner(model, _procedure(args.batch), x, y, {"remain": np.arange(args.n)},
                    mean=MEAN, std=STD, seed=0, mesh=mesh)
    state0 = sharding.replicate(init, mesh)
    train_s = timed(lambda runner=runner, state0=state0: runner.epoch(state0, 1)[0].params,
                    args.reps)
    row = {"devices": n, "fisher_examples_per_s": args.n / fisher_s,
           "train_examples_per_s": runner.steps(1) * args.batch / train_s,
           "fisher_path": fd.describe(init.params, {k: v[:2] for k, v in batch.items()}).path}
    rows.append(row)
  for row in rows:
    row["fisher_speedup"] = row["fisher_examples_per_s"] / rows[0]["fisher_examples_per_s"]
    row["train_speedup"] = row["train_examples_per_s"] / rows[0]["train_examples_per_s"]
    emit({"bench": "scale", "model": args.model, "n": args.n, "batch": args.batch,
          "chunk": args.chunk, **row})
  return rows


def stacked(args) -> list[dict]:
  """Fine-tuning epochs of K units: K separate programs one after the other versus one
  stacked program (:func:`fmjax.runner.stack`), on one device."""
  model = get_model(args.model, 10)
  init = _init(model)
  images, labels = cifar_like(args.n)
  x, y = jnp.asarray(images), jnp.asarray(labels)
  rows = []
  for k in args.units:
    fts = [Runner(model, _procedure(args.batch), x, y, {"remain": np.arange(args.n)},
                  mean=MEAN, std=STD, seed=seed) for seed in range(k)]
    states = [ft.init(init.params, init.model_state) for ft in fts]
    group = stack(fts)
    separate_s = timed(lambda fts=fts, states=states: [
        ft.epoch(s, 1)[0].params for ft, s in zip(fts, states, strict=True)], args.reps)
    stacked_s = timed(lambda group=group, states=states: [
        s.params for s in group.epoch(states, 1)[0]], args.reps)
    examples = k * fts[0].steps(1) * args.batch
    rows.append({"units": k, "separate_examples_per_s": examples / separate_s,
                 "stacked_examples_per_s": examples / stacked_s,
                 "stacked_over_separate": separate_s / stacked_s})
    emit({"bench": "stacked_units", "model": args.model, "n": args.n, "batch": args.batch,
          **rows[-1]})
  return rows


def memory_child(n: int, args) -> None:
  """One Fisher pass over ``n`` examples streamed in batches; prints its peak memory."""
  model = get_model(args.model, 10)
  init = _init(model)
  fd = fmjax.make_fisher_diag(model, init.model_state, chunk_size=args.chunk)

  def batches():
    for i in range(0, n, args.batch):
      x, y = cifar_like(min(args.batch, n - i), seed=i)
      yield {"image": data.normalize(jnp.asarray(x), MEAN, STD), "label": y}

  start = time.perf_counter()
  est = fmjax.accumulate_fisher_diag(fd, init.params, batches())
  jax.block_until_ready(est.total)
  stats = jax.local_devices()[0].memory_stats() or {}
  emit({"bench": "memory", "model": args.model, "n": n, "chunk": args.chunk,
        "seconds": time.perf_counter() - start,
        "peak_host_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_device_mib": (stats["peak_bytes_in_use"] / 2**20
                            if "peak_bytes_in_use" in stats else None),
        "backend": jax.default_backend()})


def memory(args) -> list[dict]:
  rows = []
  for n in args.memory_n:
    cmd = [sys.executable, __file__, "--memory-child", str(n), "--model", args.model,
           "--chunk", str(args.chunk), "--batch", str(args.batch), "--cpu-devices",
           str(args.cpu_devices and 1)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    row = json.loads(out.strip().splitlines()[-1])
    print(out.strip().splitlines()[-1], flush=True)
    rows.append(row)
  return rows


def table(rows: list[dict], units: list[dict], mem: list[dict]) -> str:
  lines = ["| devices | Fisher (ex/s) | vs 1 device | training (ex/s) | vs 1 device |",
           "|---:|---:|---:|---:|---:|"]
  for r in rows:
    lines.append(f"| {r['devices']} | {r['fisher_examples_per_s']:.0f} | "
                 f"{r['fisher_speedup']:.2f}x | {r['train_examples_per_s']:.0f} | "
                 f"{r['train_speedup']:.2f}x |")
  if units:
    lines += ["", "| K units, one device | separate programs (ex/s, all units) | "
              "one stacked program (ex/s) | stacked vs separate |", "|---:|---:|---:|---:|"]
    for u in units:
      lines.append(f"| {u['units']} | {u['separate_examples_per_s']:.0f} | "
                   f"{u['stacked_examples_per_s']:.0f} | {u['stacked_over_separate']:.2f}x |")
  if mem:
    lines += ["", "| Fisher pass over N examples | peak host memory (MiB) | "
              "peak device memory (MiB) | seconds |", "|---:|---:|---:|---:|"]
    for m in mem:
      dev = "n/a (CPU)" if m["peak_device_mib"] is None else f"{m['peak_device_mib']:.0f}"
      lines.append(f"| {m['n']} | {m['peak_host_mib']:.0f} | {dev} | {m['seconds']:.1f} |")
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--model", default="resnet20")
  parser.add_argument("--n", type=int, default=512, help="examples per timed pass")
  parser.add_argument("--batch", type=int, default=128, help="training and streaming batch")
  parser.add_argument("--chunk", type=int, default=64, help="Fisher examples per device block")
  parser.add_argument("--reps", type=int, default=2, help="timed repetitions (median)")
  parser.add_argument("--devices", default=None,
                      help="comma-separated device counts (default: 1, 2, 4, ... up to all)")
  parser.add_argument("--cpu-devices", type=int, default=8,
                      help="force this many CPU host devices (0: use the real devices)")
  parser.add_argument("--units", default="1,3,9", help="stacked fine-tuning units K")
  parser.add_argument("--memory-n", default="1024,4096,16384",
                      help="example counts of the memory pass ('' to skip)")
  parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.memory_child is not None:
    memory_child(args.memory_child, args)
    return
  count = len(jax.devices())
  args.devices = ([int(d) for d in args.devices.split(",")] if args.devices else
                  [d for d in (1, 2, 4, 8, 16) if d <= count])
  args.memory_n = [int(n) for n in args.memory_n.split(",") if n]
  args.units = [int(k) for k in args.units.split(",") if k]
  emit({"bench": "machine", "backend": jax.default_backend(), "devices": count,
        "device_kind": jax.devices()[0].device_kind, "cpus": os.cpu_count(),
        "python": platform.python_version(), "jax": jax.__version__})
  rows = throughput(args)
  units = stacked(args)
  mem = memory(args)
  print()
  print(table(rows, units, mem))


if __name__ == "__main__":
  main()
