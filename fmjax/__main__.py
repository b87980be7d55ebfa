"""Command line: ``python -m fmjax {train,data} ...`` (``--help`` on each)."""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=individual_dot")

import argparse  # noqa: E402
import sys  # noqa: E402

from fmjax import data  # noqa: E402
from fmjax.models import MODELS  # noqa: E402


def _train(args: argparse.Namespace) -> int:
  from fmjax import training

  decay = None
  if args.decay_epochs is not None:
    decay = tuple(float(d) for d in args.decay_epochs.split(",") if d.strip())
  config = training.default_config(
      args.dataset, args.model, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
      decay_epochs=decay, weight_decay=args.weight_decay, augment=args.augment, seed=args.seed,
      train_limit=args.train_limit)
  print(f"training {config.model} on {config.dataset} in {args.workdir}: {config.epochs} "
        f"epochs, batch {config.batch_size}, lr {config.lr} (x{config.decay_factor} after "
        f"{list(config.decay_epochs) or 'never'}), seed {config.seed}", file=sys.stderr)
  result = training.train(config, args.workdir, data_dir=args.data_dir,
                          progress=False if args.quiet else None)
  if result.metrics:
    last = result.metrics[-1]
    print(f"done: epoch {last['epoch']}, test accuracy {last['test_accuracy']:.4f}",
          file=sys.stderr)
  return 0


def _data(args: argparse.Namespace) -> int:
  if args.action == "prepare":
    path = data.prepare_tfds(args.dataset, args.data_dir)
    print(f"prepared {args.dataset} in {path}")
  ds = data.load_dataset(args.dataset, args.data_dir)
  print(f"{ds.name}: {len(ds.train_labels)} train / {len(ds.test_labels)} test images of "
        f"shape {ds.image_shape}, {ds.num_classes} classes, from {ds.source}")
  return 0


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m fmjax", description=(
      "Machine unlearning with Fisher masking. Train the original model first; later steps "
      "start from its work directory."))
  sub = p.add_subparsers(dest="command", required=True)

  t = sub.add_parser("train", help="train the original model (resumable)", description=(
      "Train a model on a dataset with the paper's settings (override any of them). The work "
      "directory keeps the config, a checkpoint per epoch and metrics.jsonl; run the same "
      "command again to resume after an interruption."))
  t.add_argument("--dataset", required=True, choices=sorted(data.DATASETS))
  t.add_argument("--model", required=True, choices=sorted(MODELS))
  t.add_argument("--workdir", required=True, help="run directory (created)")
  t.add_argument("--data-dir", default=None,
                 help=f"dataset directory (default: ${data.DATA_DIR_ENV} or ~/fmjax_data)")
  t.add_argument("--epochs", type=int, default=None,
                 help="default: 160 (CIFAR, Tiny-ImageNet) or 30 (MNIST-like)")
  t.add_argument("--batch-size", type=int, default=None, help="default: 128 (Tiny-ImageNet 32)")
  t.add_argument("--lr", type=float, default=None, help="default: 0.1, or 0.01 on MNIST-like")
  t.add_argument("--decay-epochs", default=None,
                 help="comma-separated epochs of x0.1 decays; default: 1/2 and 3/4 of the "
                      "epochs for CIFAR-like data, none for MNIST-like")
  t.add_argument("--weight-decay", type=float, default=None, help="default: 1e-4")
  t.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                 help="random crop + flip (default: off, as the paper's code)")
  t.add_argument("--seed", type=int, default=None, help="default: 0")
  t.add_argument("--train-limit", type=int, default=None,
                 help="use only the first K training examples (smoke runs)")
  t.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
  t.set_defaults(func=_train)

  d = sub.add_parser("data", help="check or prepare a dataset")
  d.add_argument("action", choices=["check", "prepare"],
                 help="check: load and describe; prepare: download with tensorflow-datasets "
                      "(needs a network and `pip install fmjax[prepare]`)")
  d.add_argument("--dataset", required=True, choices=sorted(data.DATASETS))
  d.add_argument("--data-dir", default=None)
  d.set_defaults(func=_data)
  return p


def main(argv: list[str] | None = None) -> int:
  args = parser().parse_args(argv)
  try:
    return args.func(args)
  except (ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
