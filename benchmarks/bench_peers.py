"""Benchmark: fmjax's diagonal Fisher against PyTorch peers, back to back, one table.

The same ResNet20 (option-A shortcuts, 269,722 parameters) with the SAME
weights in both frameworks: fmjax's initialisation is copied into a PyTorch
twin defined here. Over the same ``--n`` random 32x32x3 inputs with random
labels, batch ``--batch``, BatchNorm in inference mode for every Fisher
(per-example gradients are defined only then), it times:

* fmjax: ``fisher_diag`` per-layer path, ``vmap(grad)`` path, a training
  step (SGD, BatchNorm in training mode);
* PyTorch: a training pass, ``torch.func`` ``vmap(grad)``, and BackPACK's
  ``SumGradSquared`` extension (one extended backward pass per batch);

and checks that every Fisher agrees with fmjax's per-layer one (relative
error of the whole diagonal), so the table compares the same quantity. Each
line's time is also divided by the same framework's training pass (1.00 = as
fast as training), and its speed by fmjax's per-layer speed (2.00x = twice
as fast as fmjax). All figures come from one run: these machines vary by up to 1.5x between
runs.

Needs the ``bench`` extra (``make bench-peers`` installs it): a CPU build
of PyTorch and BackPACK.

Usage: python benchmarks/bench_peers.py [--n 1024] [--batch 128] [--reps 3]
"""

from __future__ import annotations

import argparse
import platform

import jax
import jax.numpy as jnp
import numpy as np
from _timing import emit, timed  # benchmarks/ is the script's directory

import fmjax
from fmjax import steps
from fmjax.models import resnet20
from fmjax.xla_flags import configure as configure_xla_flags

configure_xla_flags()   # this script is an entry point: before any computation

try:
  import torch
  import torch.nn.functional as F
  from torch import nn
except ImportError as e:   # the message says how to get the optional extra
  raise SystemExit("bench_peers needs PyTorch and BackPACK: `make bench-peers` installs the "
                   "`bench` extra (or pip install -e '.[bench]').") from e


# -- The PyTorch twin of fmjax.models.resnet20, named like its flax parameters. -----------
class Block(nn.Module):
  def __init__(self, cin: int, cout: int, stride: int):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(cout)
    self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(cout)
    self.stride, self.extra = stride, cout - cin

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    if self.stride != 1 or self.extra:   # option A: subsample, zero-pad channels
      x = x[:, :, ::self.stride, ::self.stride]
      x = F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
    return F.relu(y + x)


class TorchResNet20(nn.Module):
  def __init__(self, num_classes: int = 10):
    super().__init__()
    self.conv_init = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
    self.bn_init = nn.BatchNorm2d(16)
    blocks, cin = {}, 16
    for s, width in enumerate((16, 32, 64)):
      for b in range(3):
        blocks[f"stage{s + 1}_block{b + 1}"] = Block(cin, width, 2 if s and not b else 1)
        cin = width
    self.blocks = nn.ModuleDict(blocks)
    self.classifier = nn.Linear(64, num_classes)

  def forward(self, x):
    x = F.relu(self.bn_init(self.conv_init(x)))
    for block in self.blocks.values():
      x = block(x)
    return self.classifier(x.mean((2, 3)))


def torch_name(flax_path: tuple[str, ...]) -> str:
  """The torch parameter (or buffer) name of a flax parameter path."""
  *mods, leaf = flax_path
  leaf = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean",
          "var": "running_var"}[leaf]
  mods = [f"blocks.{m}" if m.startswith("stage") else m for m in mods]
  return ".".join([*mods, leaf])


def to_torch(x: np.ndarray) -> torch.Tensor:
  """A flax array in torch's layout: conv [kh, kw, in, out] -> [out, in, kh, kw], dense
  [in, out] -> [out, in]."""
  x = np.array(x, np.float32)   # a writable copy
  if x.ndim == 4:
    x = x.transpose(3, 2, 0, 1)
  elif x.ndim == 2:
    x = x.T
  return torch.from_numpy(np.ascontiguousarray(x))


def flat_flax(tree) -> dict[str, np.ndarray]:
  return {torch_name(tuple(k.key for k in path)): np.asarray(v)
          for path, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--n", type=int, default=1024, help="examples per timed pass")
  parser.add_argument("--batch", type=int, default=128, help="batch size")
  parser.add_argument("--reps", type=int, default=3, help="timed repetitions (median)")
  parser.add_argument("--threads", type=int, default=None,
                      help="PyTorch threads (default: PyTorch's own choice)")
  args = parser.parse_args()
  if args.threads:
    torch.set_num_threads(args.threads)
  emit({"bench": "machine", "python": platform.python_version(), "jax": jax.__version__,
        "torch": torch.__version__, "backend": jax.default_backend(),
        "torch_threads": torch.get_num_threads()})
  rng = np.random.default_rng(0)
  x = rng.normal(size=(args.n, 32, 32, 3)).astype(np.float32)
  y = rng.integers(0, 10, args.n).astype(np.int32)
  batches = [(x[i:i + args.batch], y[i:i + args.batch]) for i in range(0, args.n, args.batch)]

  # -- fmjax ------------------------------------------------------------------------------
  model = resnet20(10)
  opt = steps.sgd(0.01, momentum=0.9, weight_decay=1e-4)
  state = steps.init_train_state(model, opt, jax.random.key(0), (1, 32, 32, 3))
  # Non-trivial running statistics, the same in both frameworks.
  stats = jax.tree.map(lambda s: s + 0.1 * jax.random.uniform(jax.random.key(1), s.shape),
                       state.model_state)
  state = state._replace(model_state=stats)
  results, fishers = {}, {}
  for path in ("per_layer", "vmap"):
    fd = fmjax.make_fisher_diag(model, stats, path=path, chunk_size=args.batch)

    def fisher(fd=fd):
      total = None
      for bx, by in batches:
        part = fd.sum(state.params, {"image": bx, "label": by}).total
        total = part if total is None else jax.tree.map(jnp.add, total, part)
      return total

    results[f"fmjax fisher_diag, {path}"] = ("fmjax", timed(fisher, args.reps))
    fishers[f"fmjax fisher_diag, {path}"] = flat_flax(fisher())
  step = jax.jit(lambda s, b: steps.train_step(model, opt, s, b))

  def train_pass():
    s = state
    for bx, by in batches:
      s, _ = step(s, {"image": bx, "label": by})
    return s.params

  results["fmjax training pass"] = ("fmjax", timed(train_pass, args.reps))

  # -- PyTorch, the same weights -----------------------------------------------------------
  net = TorchResNet20(10)
  weights = {**flat_flax(state.params), **flat_flax(stats["batch_stats"])}
  with torch.no_grad():
    for name, tensor in [*net.named_parameters(), *net.named_buffers()]:
      if name.endswith("num_batches_tracked"):
        continue
      tensor.copy_(to_torch(weights[name]))
  tx = [(torch.from_numpy(bx.transpose(0, 3, 1, 2).copy()), torch.from_numpy(by).long())
        for bx, by in batches]
  with torch.no_grad():   # the twin computes what fmjax computes (inference mode)
    net.eval()
    got = net(tx[0][0]).numpy()
    want = np.asarray(model.apply({"params": state.params, **stats}, batches[0][0]))
    twin_err = float(np.abs(got - want).max() / np.abs(want).max())
  emit({"bench": "twin", "logits_rel_error": twin_err})
  sgd = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
  initial = {k: v.clone() for k, v in net.state_dict().items()}

  def torch_train():
    net.load_state_dict(initial)
    net.train()
    for bx, by in tx:
      sgd.zero_grad()
      F.cross_entropy(net(bx), by).backward()
      sgd.step()
    net.load_state_dict(initial)
    return None

  results["PyTorch training pass"] = ("torch", timed(torch_train, args.reps))
  net.eval()
  params = {k: v.detach() for k, v in net.named_parameters()}
  buffers = {k: v.detach() for k, v in net.named_buffers()}

  def log_p(p, bx, by):
    logits = torch.func.functional_call(net, (p, buffers), (bx[None],))
    return torch.gather(F.log_softmax(logits, -1)[0], 0, by[None])[0]

  per_example = torch.func.vmap(torch.func.grad(log_p), in_dims=(None, 0, 0))

  def torch_func():
    total = {k: torch.zeros_like(v) for k, v in params.items()}
    with torch.no_grad():
      for bx, by in tx:
        for k, g in per_example(params, bx, by).items():
          total[k] += (g * g).sum(0)
    return total

  results["PyTorch torch.func vmap(grad)"] = ("torch", timed(torch_func, args.reps))
  fishers["PyTorch torch.func vmap(grad)"] = {k: v.numpy() for k, v in torch_func().items()}

  import backpack
  from backpack.extensions import SumGradSquared
  extended = backpack.extend(net)
  # BackPACK's SumGradSquared squares the gradients of a SUM loss per example: the
  # negative log-likelihood summed over the batch has per-example gradients -grad log p.
  loss_fn = backpack.extend(nn.CrossEntropyLoss(reduction="sum"))

  def backpack_sgs():
    total = {k: torch.zeros_like(v) for k, v in params.items()}
    for bx, by in tx:
      extended.zero_grad()
      with backpack.backpack(SumGradSquared()):
        loss_fn(extended(bx), by).backward()
      for k, p in extended.named_parameters():
        total[k] += p.sum_grad_squared
    return total

  results["PyTorch BackPACK SumGradSquared"] = ("torch", timed(backpack_sgs, args.reps))
  fishers["PyTorch BackPACK SumGradSquared"] = {k: v.numpy() for k, v in
                                                backpack_sgs().items()}

  # -- one table ---------------------------------------------------------------------------
  reference = fishers["fmjax fisher_diag, per_layer"]
  ref_norm = np.sqrt(sum(float((v.astype(np.float64) ** 2).sum()) for v in reference.values()))
  train_s = {"fmjax": results["fmjax training pass"][1],
             "torch": results["PyTorch training pass"][1]}
  fmjax_s = results["fmjax fisher_diag, per_layer"][1]
  rows = []
  for name, (framework, seconds) in results.items():
    row = {"bench": "peers", "what": name, "examples_per_s": args.n / seconds,
           "vs_training": seconds / train_s[framework],
           "vs_fmjax_fisher": fmjax_s / seconds if "training" not in name else None}
    if name in fishers:
      got = fishers[name]
      in_layout = ((lambda a: to_torch(a).numpy()) if name.startswith("PyTorch")
                   else (lambda a: a))
      diff = np.sqrt(sum(float(((in_layout(reference[k]).astype(np.float64)
                                 - got[k].astype(np.float64)) ** 2).sum()) for k in got))
      row["fisher_rel_error"] = diff / ref_norm
    rows.append(row)
    emit(row)
  print()
  print(f"ResNet20, {args.n} random 32x32x3 examples, batch {args.batch}, same weights; "
        f"JAX {jax.__version__}, PyTorch {torch.__version__} ({torch.get_num_threads()} "
        "threads), one run:")
  print()
  print("| | examples/s | time / its framework's training pass | speed / fmjax per-layer's "
        "| Fisher: relative error vs fmjax per-layer |")
  print("|---|---:|---:|---:|---:|")
  for r in rows:
    vs = "" if r["vs_fmjax_fisher"] is None else f"{r['vs_fmjax_fisher']:.2f}x"
    err = f"{r['fisher_rel_error']:.1e}" if "fisher_rel_error" in r else ""
    if r["what"] == "fmjax fisher_diag, per_layer":
      err = "(reference)"
    print(f"| {r['what']} | {r['examples_per_s']:.0f} | {r['vs_training']:.2f} | {vs} | "
          f"{err} |")


if __name__ == "__main__":
  main()
