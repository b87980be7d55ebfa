"""A run's headline numbers from its records, and the one-line forms printed while it runs."""

from __future__ import annotations

from fmjax import readouts
from fmjax.run.config import UnlearnConfig, config_setting


def record_line(r: dict) -> str:
  keys = [("forget_test_accuracy", "forget test"), ("remain_test_accuracy", "remain test"),
          ("test_accuracy", "test"), ("noise_accuracy", "noise"),
          ("mia_member_rate", "MIA member rate")]
  shown = [(label, r[k]) for k, label in keys if r.get(k) is not None]
  if "forget_test_accuracy" in r:
    shown = [s for s in shown if s[0] != "test"]
  return ", ".join(f"{label} {v:.4f}" for label, v in shown)


def seconds_line(s: dict) -> str:
  return ", ".join(f"{k} {v:.1f}s" for k, v in s.items())


def summarize(config: UnlearnConfig, records: list[dict]) -> dict:
  """The run's headline numbers from its records (used for tables)."""
  by_phase = {p: [r for r in records if r["phase"] == p] for p in
              ("original", "edit", "finetune", "relearn")}
  curve = by_phase["edit"] + by_phase["finetune"]
  final = curve[-1]
  seconds: dict[str, float] = {}
  for r in records:
    for k, v in r.get("seconds", {}).items():
      seconds[k] = seconds.get(k, 0.0) + v
  out = {"method": config.method.name, "seed": config.seed, "epochs": len(by_phase["finetune"]),
         "original": {k: v for k, v in by_phase["original"][0].items()
                      if k not in ("phase", "epoch", "seconds")},
         "mask_only": {k: v for k, v in curve[0].items()
                       if k not in ("phase", "epoch", "seconds", "info", "masked_layers")},
         "final": {k: v for k, v in final.items()   # a readout, however it was computed
                   if k not in ("phase", "epoch", "seconds", "info", "masked_layers",
                                "stacked_units")},
         "seconds": seconds}
  curves = config.eval_epochs == "all"   # else only the edit's and the last readout
  for name, kind in (("forget_test_accuracy", "forget"), ("remain_test_accuracy", "remain"),
                     ("test_accuracy", "remain"), ("noise_accuracy", "remain")):
    values = [r.get(name) for r in curve]
    if curves and any(v is not None for v in values):
      out.setdefault("volatility", {})[name] = readouts.volatility(values, kind=kind)
  for name in ("test_accuracy", "noise_accuracy"):
    values = [r[name] for r in curve if r.get(name) is not None]
    if values:
      out[f"best_{name}"] = max(values)
  stored = [r for r in records if r["phase"] == "confidences"]
  if stored:
    out["confidences"] = {k: stored[0][k] for k in ("file", "sha256", "examples")}
    epochs = {str(r["epoch"]): r["confidences"] for r in records
              if isinstance(r.get("confidences"), dict)}
    if epochs:   # confidence_epochs='all': the edit's (epoch 0) and every epoch's
      out["confidences"]["epochs"] = epochs
  if by_phase["relearn"]:
    out["relearn_epochs"] = by_phase["relearn"][0]["relearn_epochs"]
    out["relearn_steps"] = by_phase["relearn"][0].get("relearn_steps")
  # The protocol's accuracies; its RTE is a wall time like ``seconds``: run_time(records).
  out["protocol"] = readouts.protocol_readouts(final, setting=config_setting(config))
  return out


def run_time(records: list[dict]) -> float:
  """RTE: seconds of the unlearning itself, the edit's phases and every fine-tuning
  (or procedure) epoch, without any evaluation or the relearn readout."""
  total = 0.0
  for r in records:
    if r["phase"] in ("edit", "finetune"):
      total += sum(v for k, v in r.get("seconds", {}).items() if k != "evaluate")
  return total


def summary_line(summary: dict) -> str:
  """One human line per method."""
  f, m = summary["final"], summary["mask_only"]
  parts = []
  if f.get("forget_test_accuracy") is not None:
    parts.append(f"forget test {f['forget_test_accuracy']:.3f} (edit only "
                 f"{m['forget_test_accuracy']:.3f})")
    parts.append(f"remain test {f['remain_test_accuracy']:.3f} (edit only "
                 f"{m['remain_test_accuracy']:.3f})")
  else:
    parts.append(f"test {f['test_accuracy']:.3f}")
    if f.get("noise_accuracy") is not None:
      parts.append(f"noise {f['noise_accuracy']:.3f}")
  if f.get("mia_member_rate") is not None:
    parts.append(f"MIA member rate {f['mia_member_rate']:.3f}")
  if "relearn_epochs" in summary:
    r, s = summary["relearn_epochs"], summary.get("relearn_steps")
    parts.append(f"relearn {'>max' if r is None else r} epochs "
                 f"({'>max' if s is None else s} steps)")
  total = sum(summary["seconds"].values())
  parts.append(f"{summary['epochs']} epochs, {total:.0f}s")
  return f"{summary['method']}: " + ", ".join(parts)
