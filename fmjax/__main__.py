"""Command line: ``python -m fmjax {train,unlearn,data} ...`` (``--help`` on each)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from fmjax import data
from fmjax.methods import METHODS
from fmjax.models import MODELS


def _train(args: argparse.Namespace) -> int:
  from fmjax import training

  decay = None
  if args.decay_epochs is not None:
    decay = tuple(float(d) for d in args.decay_epochs.split(",") if d.strip())
  config = training.default_config(
      args.dataset, args.model, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
      decay_epochs=decay, weight_decay=args.weight_decay, augment=args.augment, seed=args.seed,
      train_limit=args.train_limit, noise_fraction=args.noise_fraction,
      noise_seed=args.noise_seed)
  if args.print_config:
    print(json.dumps(dataclasses.asdict(config), indent=2, sort_keys=True))
    return 0
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


def _unlearn(args: argparse.Namespace) -> int:
  from fmjax import unlearning

  lr = args.lr
  if lr is not None and lr != "compressed":
    try:
      lr = float(lr)
    except ValueError:
      raise ValueError(f"--lr must be 'compressed' or a number, got {lr!r}.") from None
  if args.outliers:
    classes = None
  else:
    classes = tuple(args.forget_class) if args.forget_class else (0,)
  config = unlearning.make_config(
      args.checkpoint, args.method, ratio=args.ratio, forget_classes=classes,
      epochs=args.epochs, compress_epochs=args.compress_epochs, lr=lr,
      batch_size=args.batch_size, freeze_mask=args.freeze_mask or None,
      remain_limit=args.remain_limit, no_remain=args.no_remain or None, seed=args.seed,
      maskable=args.maskable, weighting=args.weighting, score_limit=args.score_limit,
      score_batch_size=args.score_batch_size, fisher_chunk=args.fisher_chunk,
      ig_steps=args.ig_steps, ig_limit=args.ig_limit, noise_alpha=args.noise_alpha,
      influence_damping=args.influence_damping, influence_iters=args.influence_iters,
      influence_examples=args.influence_examples, influence_hessian=args.influence_hessian,
      eval_limit=args.eval_limit, mia=False if args.no_mia else None,
      relearn_epochs=args.relearn_epochs, relearn_threshold=args.relearn_threshold)
  if args.print_config:
    print(json.dumps(config.to_json(), indent=2, sort_keys=True))
    return 0
  result = unlearning.unlearn(config, args.workdir, data_dir=args.data_dir,
                              progress=False if args.quiet else None)
  if args.quiet:
    print(unlearning.summary_line(result.summary))
  return 0


def _data(args: argparse.Namespace) -> int:
  if args.action == "prepare":
    path = data.prepare_tfds(args.dataset, args.data_dir, archives=args.archives)
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
  t.add_argument("--noise-fraction", type=float, default=None,
                 help="outlier deletion: shuffle the labels of this fraction of the training "
                      "set (they become the forget set of `unlearn --outliers`)")
  t.add_argument("--noise-seed", type=int, default=None, help="seed of the outliers (0)")
  t.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
  t.add_argument("--print-config", action="store_true",
                 help="print the resolved config as JSON and exit (nothing is written)")
  t.set_defaults(func=_train)

  u = sub.add_parser("unlearn", help="unlearn a class or the outliers (resumable)", description=(
      "Apply an unlearning method to a trained model (its training --workdir), fine-tune on "
      "the remain data with the compressed schedule, and record forget/remain accuracy, "
      "membership inference and relearn time after the edit and after every epoch. Run the "
      "same command again to resume."))
  u.add_argument("--checkpoint", required=True, help="the training run's work directory")
  u.add_argument("--method", required=True, help=f"one of: {', '.join(METHODS)}")
  u.add_argument("--workdir", required=True, help="this run's directory (created)")
  group = u.add_mutually_exclusive_group()
  group.add_argument("--forget-class", type=int, action="append", default=None,
                     help="class to remove (repeat for several; default 0, the paper's)")
  group.add_argument("--outliers", action="store_true",
                     help="forget the outliers the model was trained with (--noise-fraction)")
  u.add_argument("--ratio", type=float, default=None,
                 help="mask ratio R (default 0.02 on CIFAR, 0.04 otherwise)")
  u.add_argument("--epochs", type=int, default=None,
                 help="fine-tuning epochs T (default 30; 0 for fisher_noise and influence; "
                      "the original epochs for retrain)")
  u.add_argument("--compress-epochs", type=float, default=None, help="S (default 5)")
  u.add_argument("--lr", default=None,
                 help="'compressed' (default) or a constant fine-tuning learning rate")
  u.add_argument("--batch-size", type=int, default=None, help="default: the training batch")
  u.add_argument("--freeze-mask", action="store_true",
                 help="keep masked weights at zero during fine-tuning")
  u.add_argument("--remain-limit", type=int, default=None,
                 help="methods see only K random remain examples (scoring and fine-tuning)")
  u.add_argument("--no-remain", action="store_true",
                 help="methods see no remain data (forget data only; needs --epochs 0)")
  u.add_argument("--seed", type=int, default=None)
  u.add_argument("--maskable", choices=["all", "kernels"], default=None)
  u.add_argument("--weighting", choices=["sum", "mean"], default=None,
                 help="FisherMask score: per-set sums (default, the paper) or means")
  u.add_argument("--score-limit", type=int, default=None,
                 help="score on at most K remain examples (default: all)")
  u.add_argument("--score-batch-size", type=int, default=None,
                 help="examples per scoring batch of every method (256)")
  u.add_argument("--fisher-chunk", type=int, default=None,
                 help="examples per compiled Fisher block (128)")
  u.add_argument("--ig-steps", type=int, default=None, help="GradMask Riemann steps (20)")
  u.add_argument("--ig-limit", type=int, default=None,
                 help="GradMask scores at most K forget examples (default: all)")
  u.add_argument("--noise-alpha", type=float, default=None, help="FisherNoise alpha (1e-6)")
  u.add_argument("--influence-damping", type=float, default=None, help="default 0.01")
  u.add_argument("--influence-iters", type=int, default=None, help="CG iterations (20)")
  u.add_argument("--influence-examples", type=int, default=None,
                 help="examples of the Hessian estimate (2048)")
  u.add_argument("--influence-hessian", choices=["all", "remain"], default=None)
  u.add_argument("--eval-limit", type=int, default=None,
                 help="training examples evaluated per readout (10000)")
  u.add_argument("--no-mia", action="store_true", help="skip membership inference")
  u.add_argument("--relearn-epochs", type=int, default=None,
                 help="max epochs of the relearn readout (10; 0 skips it)")
  u.add_argument("--relearn-threshold", type=float, default=None,
                 help="forget loss that counts as relearned (default: the original model's)")
  u.add_argument("--data-dir", default=None,
                 help=f"dataset directory (default: ${data.DATA_DIR_ENV} or ~/fmjax_data)")
  u.add_argument("--quiet", action="store_true", help="one summary line instead of progress")
  u.add_argument("--print-config", action="store_true",
                 help="print the resolved config as JSON and exit (nothing is written)")
  u.set_defaults(func=_unlearn)

  d = sub.add_parser("data", help="check or prepare a dataset")
  d.add_argument("action", choices=["check", "prepare"],
                 help="check: load and describe; prepare: download with tensorflow-datasets "
                      "(needs a network and `pip install fmjax[prepare]`)")
  d.add_argument("--dataset", required=True, choices=sorted(data.DATASETS))
  d.add_argument("--data-dir", default=None,
                 help=f"dataset directory (default: ${data.DATA_DIR_ENV} or ~/fmjax_data)")
  d.add_argument("--archives", default=None,
                 help="prepare: a folder holding the official archives, downloaded elsewhere "
                      "(default: <data dir>/tfds/downloads/manual); checked by checksum")
  d.set_defaults(func=_data)
  return p


def main(argv: list[str] | None = None) -> int:
  args = parser().parse_args(argv)
  try:
    return args.func(args)
  except (ValueError, FileNotFoundError, data.PrepareError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
