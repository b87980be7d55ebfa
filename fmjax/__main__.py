"""Command line: ``python -m fmjax {train,unlearn,data} ...`` (``--help`` on each)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from fmjax import _fields, data, distributed, methods, training, unlearning, xla_flags
from fmjax.models import MODELS


def _given(args: argparse.Namespace, names: list[str]) -> dict:
  """The generated options the user typed (the others keep the code's defaults)."""
  return {n: getattr(args, n) for n in names if hasattr(args, n)}


def _train(args: argparse.Namespace) -> int:
  from fmjax import training

  config = training.default_config(args.dataset, args.model,
                                   **_given(args, args.config_fields))
  if args.print_config:
    print(json.dumps(dataclasses.asdict(config), indent=2, sort_keys=True))
    return 0
  ds = data.load_dataset(config.dataset, args.data_dir)   # a damaged file: its one line
  print(f"training {config.model} on {config.dataset} in {args.workdir}: {config.epochs} "
        f"epochs, batch {config.batch_size}, lr {config.lr} (x{config.decay_factor} after "
        f"{list(config.decay_epochs) or 'never'}), seed {config.seed}", file=sys.stderr)
  result = training.train(config, args.workdir, dataset=ds,
                          progress=False if args.quiet else None, devices=args.devices)
  if result.metrics:
    last = result.metrics[-1]
    print(f"done: epoch {last['epoch']}, test accuracy {last['test_accuracy']:.4f}",
          file=sys.stderr)
  return 0


def _unlearn(args: argparse.Namespace) -> int:
  from fmjax import unlearning

  if getattr(args, "forget_random", None) is not None and (args.outliers or args.forget_class):
    print("error: --forget-random names the forget set itself; drop --forget-class/--outliers.",
          file=sys.stderr)
    return 2
  random = getattr(args, "forget_random", None) is not None
  classes = None if args.outliers or random else tuple(args.forget_class or (0,))
  config = unlearning.make_config(args.checkpoint, args.method, forget_classes=classes,
                                  **_given(args, args.config_fields))
  if args.print_config:
    print(json.dumps(config.to_json(), indent=2, sort_keys=True))
    return 0
  result = unlearning.unlearn(config, args.workdir, data_dir=args.data_dir,
                              progress=False if args.quiet else None,
                              allow_partial=args.allow_partial, devices=args.devices)
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


def _methods_epilog() -> str:
  lines = ["methods:"]
  for name, cls in methods.registry().items():
    lines.append(f"  {name:16s} {(cls.__doc__ or '').strip().splitlines()[0]}")
  return "\n".join(lines)


def _chosen_method(argv: list[str] | None) -> str | None:
  """The ``--method`` of an ``unlearn`` command line, after its ``--import`` modules are
  imported (so that its options can be generated); None when there is none yet."""
  argv = sys.argv[1:] if argv is None else argv
  if not argv or argv[0] != "unlearn":
    return None
  pre = argparse.ArgumentParser(add_help=False)
  pre.add_argument("--method")
  pre.add_argument("--import", dest="imports", action="append", default=[])
  known, _ = pre.parse_known_args(argv[1:])
  for module in known.imports:
    methods.import_methods(module)
  return known.method if known.method in methods.registry() else None


def parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
  """The command line; an ``unlearn`` line's ``--method`` adds that method's options."""
  method = _chosen_method(argv)
  p = argparse.ArgumentParser(prog="python -m fmjax", description=(
      "Machine unlearning with Fisher masking. Train the original model first; later steps "
      "start from its work directory."))
  sub = p.add_subparsers(dest="command", required=True)
  # Options every command takes.
  common = argparse.ArgumentParser(add_help=False)
  common.add_argument("--data-dir", default=None,
                      help=f"dataset directory (default: ${data.DATA_DIR_ENV} or ~/fmjax_data)")
  common.add_argument("--print-config", action="store_true",
                      help="print the resolved config as JSON and exit (nothing is written)")
  common.add_argument("--debug", action="store_true",
                      help="on an error, print the full traceback instead of one line")
  common.add_argument("--devices", type=int, default=None, metavar="N",
                      help="split every batch across N devices (default: all; not part of "
                           "the config: results agree across device counts up to the order "
                           "of floating-point sums)")
  debug = argparse.ArgumentParser(add_help=False)
  debug.add_argument("--debug", action="store_true",
                     help="on an error, print the full traceback instead of one line")

  t = sub.add_parser("train", parents=[common], help="train the original model (resumable)",
                     description=(
      "Train a model on a dataset with the paper's settings (override any of them). The work "
      "directory keeps the config, a checkpoint per epoch and metrics.jsonl; run the same "
      "command again to resume after an interruption. Every field of "
      "fmjax.training.TrainConfig is an option."))
  t.add_argument("--dataset", required=True, choices=sorted(data.DATASETS))
  t.add_argument("--model", required=True, choices=sorted(MODELS))
  t.add_argument("--workdir", required=True, help="run directory (created)")
  fields = _fields.add_options(t, training.TrainConfig, skip=("dataset", "model"), defaults={
      "epochs": "160 on CIFAR and Tiny-ImageNet, 30 on MNIST-like data",
      "batch_size": "128, Tiny-ImageNet 32", "lr": "0.1, or 0.01 on MNIST-like data",
      "decay_epochs": "1/2 and 3/4 of the epochs on CIFAR-like data, none on MNIST-like"})
  t.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
  t.set_defaults(func=_train, config_fields=fields)

  u = sub.add_parser("unlearn", parents=[common],
                     help="unlearn a class, a random subset or outliers (resumable)",
                     description=(
      "Apply an unlearning method to a trained model (its training --workdir), train as the "
      "method's recipe says (the paper's methods: fine-tune on the remain data with the "
      "compressed schedule), and record forget/remain accuracy, membership inference and "
      "relearn time after the edit and after every epoch. Run the same command again to "
      "resume. Every field of fmjax.unlearning.UnlearnConfig is an option, and every field "
      "of the chosen method: `--method NAME --help` lists NAME's settings and recipe."),
                     epilog=_methods_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
  u.add_argument("--checkpoint", required=True, help="the training run's work directory")
  u.add_argument("--method", required=True, choices=list(methods.registry()),
                 help="the method (its settings follow it: --method NAME --help)")
  u.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                 help="import MODULE first, so that the methods it registers can be named "
                      "(repeatable; installed packages' methods load through the "
                      f"'{methods.ENTRY_POINT_GROUP}' entry-point group)")
  u.add_argument("--workdir", required=True, help="this run's directory (created)")
  group = u.add_mutually_exclusive_group()
  group.add_argument("--forget-class", type=int, action="append", default=None,
                     help="class to remove (repeat for several; default 0, the paper's)")
  group.add_argument("--outliers", action="store_true",
                     help="forget the outliers the model was trained with (--noise-fraction)")
  fields = _fields.add_options(
      u, unlearning.UnlearnConfig, skip=("checkpoint", "method", "forget_classes"),
      defaults={"relearn_threshold": "the original model's forget loss"})
  if method is not None:
    options = u.add_argument_group(f"{method} settings", methods.get_method(method).__doc__
                                   .strip().splitlines()[0])
    fields += _fields.add_options(options, methods.get_method(method), defaults={
        "ratio": "the paper's for the dataset: 0.02 on CIFAR, 0.04 otherwise"})
  u.add_argument("--allow-partial", action="store_true",
                 help="unlearn a training run that has not finished its epochs (its newest "
                      "checkpoint); refused otherwise")
  u.add_argument("--quiet", action="store_true", help="one summary line instead of progress")
  u.set_defaults(func=_unlearn, config_fields=fields)

  d = sub.add_parser("data", help="check or prepare a dataset", parents=[debug])
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
  try:
    args = parser(argv).parse_args(argv)
  except ValueError as e:   # an --import that fails, a broken plug-in
    print(f"error: {e}", file=sys.stderr)
    return 2
  xla_flags.configure()   # before the first computation starts a backend
  try:
    distributed.initialize()   # several processes when the environment names them
    return args.func(args)
  except (ValueError, FileNotFoundError, data.PrepareError) as e:
    if args.debug:
      raise
    print(f"error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
