"""The ensemble scores of an experiment whose units store confidences (:mod:`fmjax.privacy`).

Every line of a setting is an ensemble (its seeds); the setting's Retrain unit with a
``seed_offset`` is the reference every ensemble is scored against (Retrain's own row then
scores one exact unlearning against another: the scores' noise floor). Intervals are
95% bootstrap intervals over forget examples (1,000 resamples; 200 for the attack's AUC).
"""

from __future__ import annotations

import pathlib

import numpy as np

from experiments._spec import Experiment
from experiments.report.format import markdown_table, mean_of
from experiments.report.load import grouped, settings_of
from experiments.report.protocol import protocol_lines, protocol_of
from fmjax import checkpoints, privacy

MIN_MODELS = 3
# The figure's ε bands (the challenge's buckets merged above 2) and their colours.
EPS_BINS = ((0, 0.5), (0.5, 1), (1, 2), (2, 5), (5, 50), (50, np.inf))
EPS_COLORS = ("#1a9850", "#91cf60", "#d9ef8b", "#fee08b", "#fc8d59", "#d73027")


def _reference(exp: Experiment, setting: str):
  return next((u for u in exp.units if u.setting == setting and u.method == "retrain"
               and u.seed_offset and not u.tuning), None)


def ensembles(exp: Experiment, results, setting: str) -> dict[str, dict]:
  """Per line of ``setting`` with finished units that stored confidences: its stacked
  ``forget`` confidences ``[models, E]``, mean RA and TA, MIA-efficacy and RTE."""
  out = {}
  tuning = {u.line for u in exp.units if u.tuning}
  for (s, line), rs in grouped(results).items():
    if s != setting or line in tuning:   # a sweep's tuning lines only pick its rate
      continue
    stored = [r for r in rs if r.summary and r.summary.get("confidences")]
    if not stored:
      continue
    arrays = [_read(r, r.summary["confidences"], "run the experiment's command again: the "
                    "unit recomputes it.") for r in stored]
    index = arrays[0]["forget_index"]
    if any(not np.array_equal(a["forget_index"], index) for a in arrays):
      raise ValueError(f"{setting} / {line}: its units scored different forget sets; an "
                       "ensemble needs one (set forget_seed).")
    ps = [protocol_of(r) for r in stored]
    out[line] = {"forget": np.stack([a["forget"] for a in arrays]), "index": index,
                 "RA": mean_of(p["RA"] for p in ps), "TA": mean_of(p["TA"] for p in ps),
                 "MIA": mean_of(p.get("MIA") for p in ps), "RTE": mean_of(p["RTE"] for p in ps)}
    per_epoch = [r.summary["confidences"].get("epochs") for r in stored]
    if per_epoch[0] and all(e is not None and list(e) == list(per_epoch[0]) for e in per_epoch):
      fix = "delete the unit's directory and run the experiment's command again."
      out[line]["epochs"] = {int(k): np.stack([_read(r, e[k], fix)["forget"] for r, e in
                                               zip(stored, per_epoch, strict=True)])
                             for k in per_epoch[0]}
  return out


def _read(result, rec: dict, fix: str) -> dict:
  return checkpoints.read_arrays(pathlib.Path(result.workdir) / rec["file"], rec["sha256"],
                                 fix=fix)


def _interval(stat, n: int, reps: int, seed: int = 0) -> tuple[float, float]:
  rng = np.random.default_rng(seed)
  values = [stat(rng.integers(0, n, n)) for _ in range(reps)]
  return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def scores(unlearned: dict, reference: dict) -> dict:
  """Every ensemble score of one line against the reference ensemble."""
  u, r = unlearned["forget"].astype(np.float64), reference["forget"].astype(np.float64)
  if not np.array_equal(unlearned["index"], reference["index"]):
    raise ValueError("the line and the reference scored different forget sets.")
  quality, eps = privacy.forgetting_quality(u, r)
  points = privacy.bucket_points(eps, u.shape[0])
  n = eps.size
  shadow_u, target_u = privacy.split_models(u.shape[0], seed=0)
  shadow_r, target_r = privacy.split_models(r.shape[0], seed=1)
  attack = privacy.lira(u[shadow_u], r[shadow_r], u[target_u], r[target_r])
  pos, neg = attack["scores_unlearned"], attack["scores_retrained"]
  kl = privacy.klom(u, r)
  return {
      "models": (u.shape[0], r.shape[0]), "F": quality,
      "F_ci": _interval(lambda i: points[i].mean(), n, 1000),
      "final": privacy.final_score(quality, unlearned["RA"], reference["RA"],
                                   unlearned["TA"], reference["TA"]),
      "auc": attack["auc"],
      "auc_ci": _interval(lambda i: privacy.auc(pos[:, i].ravel(), neg[:, i].ravel()), n,
                          200),
      "tpr1": attack["tpr_at_1%"], "klom": float(kl.mean()),
      "klom_ci": _interval(lambda i: kl[i].mean(), n, 1000),
      "eps": eps, "per_example_auc": attack["per_example_auc"],
      "MIA": unlearned["MIA"], "RTE": unlearned["RTE"]}


def all_scores(exp: Experiment, results) -> dict[str, dict[str, dict]]:
  """{setting: {line: scores}} for every line with at least :data:`MIN_MODELS` models;
  each line also carries ``gap``, its mean average gap of the protocol table (None for a
  line without one)."""
  out = {}
  for setting in settings_of(exp):
    ref = _reference(exp, setting)
    ens = ensembles(exp, results, setting)
    if ref is None or ref.line not in ens or len(ens[ref.line]["forget"]) < MIN_MODELS:
      continue
    gaps = {u.line: mean_of(g) for u, _, g in protocol_lines(exp, results, setting)}
    out[setting] = {line: {**scores(e, ens[ref.line]), "gap": gaps.get(line)}
                    for line, e in ens.items()
                    if line != ref.line and len(e["forget"]) >= MIN_MODELS}
  return out


def epoch_table(exp: Experiment, results) -> str | None:
  """Forgetting quality F per fine-tuning epoch (0 = right after the edit) of every line
  whose units stored per-epoch confidences (``confidence_epochs='all'``), against the
  reference ensemble's final models; None when no line did."""
  rows, width = [], 0
  for setting in settings_of(exp):
    ref = _reference(exp, setting)
    ens = ensembles(exp, results, setting)
    if ref is None or ref.line not in ens:
      continue
    r = ens[ref.line]["forget"].astype(np.float64)
    for line, e in ens.items():
      if line == ref.line or "epochs" not in e or len(e["forget"]) < MIN_MODELS:
        continue
      fs = [privacy.forgetting_quality(u.astype(np.float64), r)[0]
            for _, u in sorted(e["epochs"].items())]
      width = max(width, len(fs))
      rows.append([setting, line] + [f"{f:.3f}" for f in fs])
  if not rows:
    return None
  rows = [row + [""] * (width + 2 - len(row)) for row in rows]
  return ("Forgetting quality F after each epoch (0 = right after the edit), each line's "
          "ensemble against the reference ensemble's final models:\n\n"
          + markdown_table(["setting", "line"] + [f"epoch {k}" for k in range(width)], rows))


def ranks(values) -> np.ndarray:
  """Ranks 1..n of ``values``, ties sharing their mean rank."""
  v = np.asarray(values, np.float64)
  order = np.argsort(v, kind="stable")
  r = np.empty(v.size)
  r[order] = np.arange(1, v.size + 1)
  for x in np.unique(v):
    r[v == x] = r[v == x].mean()
  return r


def rank_correlation(a, b) -> float:
  """Spearman's ρ: the Pearson correlation of the two orders' ranks (ties averaged); NaN
  when either order is constant."""
  ra, rb = ranks(a), ranks(b)
  if ra.std() == 0 or rb.std() == 0:
    return float("nan")
  return float(np.corrcoef(ra, rb)[0, 1])


# The orders compared, each oriented so that larger = told apart from Retrain more.
PER_EXAMPLE = (("1 − F", lambda s, ref: 1 - s["F"]), ("U-LiRA AUC", lambda s, ref: s["auc"]),
               ("KLoM", lambda s, ref: s["klom"]))
POPULATION = (("MIA-efficacy's distance to Retrain's", lambda s, ref: abs(s["MIA"] - ref["MIA"])),
              ("Avg. gap", lambda s, ref: s["gap"]))


def agreement_table(found: dict[str, dict[str, dict]]) -> str | None:
  """Per setting, Spearman's ρ between each per-example order and each population order
  over the lines other than Retrain's (+1: the same order, 0: unrelated, -1: reversed)."""
  rows = []
  for setting, lines in found.items():
    ref = next((s for k, s in lines.items() if k.startswith("retrain")), None)
    others = [s for k, s in lines.items() if not k.startswith("retrain")]
    if (ref is None or ref["MIA"] is None or len(others) < 3
        or any(s["MIA"] is None or s["gap"] is None for s in others)):
      continue
    for label, order in PER_EXAMPLE:
      rows.append([setting, label, str(len(others))] + [
          f"{rank_correlation([order(s, ref) for s in others], [pop(s, ref) for s in others]):+.2f}"
          for _, pop in POPULATION])
  if not rows:
    return None
  return ("Do the per-example scores order the methods as the population readouts do? "
          "Spearman's ρ over the lines other than Retrain (ties share ranks; each order "
          "oriented so that larger = more distinguishable from Retrain; +1 = the same "
          "order, 0 = unrelated, -1 = reversed):\n\n" + markdown_table(
              ["setting", "per-example order", "lines"] + [f"ρ with {p}" for p, _ in
                                                           POPULATION], rows))


def _ci(x: float, ci: tuple[float, float], digits: int = 3) -> str:
  return f"{x:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def privacy_table(exp: Experiment, results) -> str:
  """The ensemble scores per line: forgetting quality F and the final score (the NeurIPS
  2023 challenge), U-LiRA AUC and TPR at 1% FPR, KLoM, population MIA-efficacy."""
  rows = []
  found = all_scores(exp, results)
  for setting, lines in found.items():
    for line, s in lines.items():
      rows.append([setting, line, f"{s['models'][0]} vs {s['models'][1]}",
                   _ci(s["F"], s["F_ci"]), f"{s['final']:.3f}", _ci(s["auc"], s["auc_ci"]),
                   f"{100 * s['tpr1']:.1f}", _ci(s["klom"], s["klom_ci"], 2),
                   "–" if s["MIA"] is None else f"{100 * s['MIA']:.2f}",
                   "–" if s["gap"] is None else f"{s['gap']:.2f}", f"{s['RTE']:.1f}"])
  if not rows:
    return (f"No ensemble yet: a line needs at least {MIN_MODELS} finished models that "
            "stored their confidences, and a Retrain reference ensemble (a Retrain unit with "
            "a seed_offset).")
  by_epoch = epoch_table(exp, results)
  agreement = agreement_table(found)
  return ("Each line's ensemble (its seeds, one forget set) against Retrain's reference "
          "ensemble, per forget example, then summarised; [95% bootstrap interval over "
          "forget examples]. F = the NeurIPS 2023 unlearning challenge's forgetting quality "
          "(1 = indistinguishable under its threshold attacks; its finite-sample floor is "
          "the Retrain row), final = F x RA/RA_retrain x TA/TA_retrain; U-LiRA = a "
          "per-example Gaussian likelihood-ratio attack fitted on half of each ensemble "
          "and evaluated on the other half (AUC 0.5 and TPR@1% FPR of 1% = no signal); "
          "KLoM = mean per-example KL of the margin distributions (0 = the same); "
          "MIA-efficacy = the POPULATION attack of the protocol table (SalUn's SVC), in "
          "%; Avg. gap = the protocol table's average gap to Retrain, in points (mean over "
          "seeds); RTE in seconds per model.\n\n" + markdown_table(
              ["setting", "line", "models (vs ref.)", "F", "final score", "U-LiRA AUC",
               "TPR@1%FPR (%)", "KLoM", "MIA-efficacy (population)", "Avg. gap",
               "RTE (s)"], rows)
          + ("" if agreement is None else "\n\n" + agreement)
          + ("" if by_epoch is None else "\n\n" + by_epoch))


def privacy_figure(exp: Experiment, results, path: pathlib.Path) -> pathlib.Path | None:
  """Left: the share of each line's forget examples per ε band (the Retrain row shows the
  scores' noise floor); right: forgetting quality F (95% interval) against RTE per model."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import matplotlib.ticker

  from experiments.report.figures import save_figure
  found = all_scores(exp, results)
  if not found:
    return None
  fig, axes = plt.subplots(len(found), 2, figsize=(11, 0.45 * max(len(v) for v in
                                                                   found.values()) + 2.2),
                           squeeze=False)
  for (setting, lines), (left, right) in zip(found.items(), axes, strict=True):
    names = sorted(lines, key=lambda k: lines[k]["F"])
    left_edge = np.zeros(len(names))
    for (lo, hi), color in zip(EPS_BINS, EPS_COLORS, strict=True):
      share = np.array([np.mean((lines[k]["eps"] >= lo) & (lines[k]["eps"] < hi))
                        for k in names])
      label = "ε = 50 (cap)" if lo == privacy.EPSILON_CAP else f"{lo:g} ≤ ε < {hi:g}"
      left.barh(range(len(names)), share, left=left_edge, color=color, label=label)
      left_edge += share
    left.set_yticks(range(len(names)), names, fontsize=8.5)
    left.set_xlim(0, 1)
    left.set_xlabel("share of forget examples")
    left.set_title(f"{setting}: per-example ε vs Retrain's reference", fontsize=10)
    left.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0, 1.06), ncol=3,
                frameon=False)
    palette = plt.get_cmap("tab10").colors
    others = iter(palette[:3] + palette[4:])   # tab10's red (3) is Retrain's
    for i, k in enumerate(sorted(names, key=lambda k: -lines[k]["F"])):   # legend: by F
      s = lines[k]
      err = [[s["F"] - s["F_ci"][0]], [s["F_ci"][1] - s["F"]]]
      retrain = k.startswith("retrain")   # points of close RTE overlap: a legend, no labels
      right.errorbar(s["RTE"], s["F"], yerr=err, fmt="*" if retrain else "osD^v<>ph"[i % 9],
                     color="tab:red" if retrain else next(others, "gray"), capsize=2,
                     markersize=9 if retrain else 6, label=k)
    right.legend(fontsize=7.5, loc="center left", frameon=False)
    right.set_xscale("log")
    right.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 5)))
    right.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    right.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    right.set_xlabel("RTE per model (s, log)")
    right.set_ylabel("forgetting quality F")
    right.set_title(f"{setting}: forgetting quality against compute", fontsize=10)
    right.grid(alpha=0.3)
  fig.suptitle(exp.title, fontsize=10.5)
  fig.tight_layout()
  return save_figure(fig, path)
