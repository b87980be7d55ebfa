"""``python -m experiments.run NAME [--small] [--workdir DIR] [--set KEY=VALUE ...]``.

Runs the experiment config ``experiments/NAME.py`` (its ``get_config``), then
writes ``results.csv``, ``report.md`` and the figures. Rerun the same command
after an interruption: finished units are skipped, an interrupted one resumes.

``--set`` overrides any field of the experiment's training or unlearning
configs (``--set train.epochs=1 --set unlearn.ratio=0.04 --set seeds=0``; see
``experiments/_overrides.py``); the overridden experiment is what the run
records in ``config.json``. ``--lr-grid salun=0.1,0.03,0.01`` runs a method at
each rate of a grid and on tuning seeds beside a tuning Retrain
(:func:`experiments._spec.sweep_lr`); the report's protocol table shows the rate the
tuning seeds select, measured on the evaluation seeds, and the whole grid below it.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import json
import pathlib
import sys
import time

from experiments import EXPERIMENTS, _overrides, _runner, _spec, report
from experiments._spec import sweep_lr
from fmjax import distributed, methods, xla_flags


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m experiments.run", description=__doc__)
  p.add_argument("name", choices=EXPERIMENTS)
  p.add_argument("--workdir", default=None, help="default: runs/NAME[-DATASET-MODEL][-small]")
  p.add_argument("--small", action="store_true",
                 help="the smoke form on other data: digits and the small CNN, one seed")
  p.add_argument("--smoke", action="store_true",
                 help="the smoke form on the experiment's own data and models, by overrides "
                      f"(before --set), the first seed only: {' '.join(_spec.SMOKE)}")
  p.add_argument("--dataset", default=None, help="class_removal etc.: the dataset")
  p.add_argument("--model", default=None, help="class_removal etc.: the model")
  p.add_argument("--seeds", default=None, help="comma-separated unlearning seeds")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="override a config field: seeds=0,1, train.<field>=..., "
                      "unlearn.<field>=... (repeatable; type-checked)")
  p.add_argument("--lr-grid", action="append", default=[], metavar="METHOD=RATE,RATE,...",
                 help="run METHOD at each learning rate of the grid (repeatable); the report "
                      "picks the rate on tuning seeds (+2000, beside a tuning Retrain) and "
                      "reports it on the evaluation seeds")
  p.add_argument("--data-dir", default=None,
                 help="dataset directory (default: $FMJAX_DATA_DIR or ~/fmjax_data)")
  p.add_argument("--devices", type=int, default=None, metavar="N",
                 help="split every batch across N devices (default: all)")
  p.add_argument("--units-per-program", type=int, default=1, metavar="K",
                 help="run up to K units that share an update rule (the seeds of a method, "
                      "Retrain's seeds, the mask methods) as one program, parameters stacked "
                      "(vmap)")
  p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                 help="import MODULE first: the methods it registers can be named in the "
                      "experiment (repeatable)")
  p.add_argument("--quiet", action="store_true", help="no progress bars or unit lines")
  p.add_argument("--debug", action="store_true",
                 help="on an error, print the full traceback instead of one line")
  return p


def main(argv: list[str] | None = None) -> int:
  args = parser().parse_args(argv)
  xla_flags.configure()   # before the first computation starts a backend
  module = importlib.import_module(f"experiments.{args.name}")
  kwargs = {"small": args.small}
  if args.dataset:
    kwargs["dataset"] = args.dataset
  if args.model:
    kwargs["model"] = args.model
  if args.seeds:   # the same as --set seeds=..., checked the same way
    args.set.insert(0, f"seeds={args.seeds}")
  workdir = args.workdir or "runs/" + "-".join(
      [args.name] + [v for v in (args.dataset, args.model) if v]
      + (["small"] if args.small else []) + (["smoke"] if args.smoke else []))
  accepted = inspect.signature(module.get_config).parameters
  extra = [k for k in kwargs if k not in accepted]
  if extra:
    print(f"error: {args.name} does not take --{', --'.join(extra)}.", file=sys.stderr)
    return 2
  if args.small and (args.dataset or args.model):
    print("error: --small runs on digits with the small CNN; it cannot be combined with "
          "--dataset/--model. To shrink a real configuration, use --set (e.g. --set "
          "train.epochs=1 --set train.train_limit=300 --set seeds=0).", file=sys.stderr)
    return 2
  try:
    for name in args.imports:
      methods.import_methods(name)
    distributed.initialize()   # several processes when the environment names them
    exp = module.get_config(**kwargs)
    if args.smoke:   # the settings a unit's methods do not have stay where they are
      exp = _overrides.apply(dataclasses.replace(exp, seeds=exp.seeds[:1]),
                             _overrides.parse(_spec.SMOKE), strict=False)
    exp = _overrides.apply(exp, _overrides.parse(args.set))
    exp = sweep_lr(exp, _overrides.parse_grids(args.lr_grid))
    start = time.perf_counter()
    outcome = _runner.run(exp, workdir, data_dir=args.data_dir,
                          progress=False if args.quiet else None, devices=args.devices,
                          units_per_program=args.units_per_program)
    if not distributed.is_writer():   # process 0 writes the report and the timings
      return 0
    paths = report.build(workdir)
  except (ValueError, FileNotFoundError) as e:
    if args.debug:
      raise
    print(f"error: {e}", file=sys.stderr)
    return 2
  elapsed = time.perf_counter() - start
  with open(pathlib.Path(workdir) / "timing.jsonl", "a") as f:   # one line per invocation
    f.write(json.dumps({"wall_s": elapsed, "ran": len(outcome["ran"]),
                        "skipped": len(outcome["skipped"]), "seconds": outcome["seconds"]})
            + "\n")
  print(f"{args.name}: {len(outcome['ran'])} units run, {len(outcome['skipped'])} already "
        f"finished, {elapsed:.0f}s; report: {paths['report']}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
