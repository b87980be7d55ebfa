"""fmjax.privacy against hand computations and literal loops of each published rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fmjax import privacy


def test_logit_confidence_is_log_p_over_1_minus_p_and_stays_finite_at_any_scale():
  rng = np.random.default_rng(0)
  logits, labels = rng.normal(size=(3, 5, 4)), np.array([0, 1, 2, 3, 1])
  p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  py = np.take_along_axis(p, np.broadcast_to(labels[:, None], (3, 5, 1)), -1)[..., 0]
  np.testing.assert_allclose(privacy.logit_confidence(logits, labels),
                             np.log(py) - np.log1p(-py), rtol=1e-10)
  # Logits of size 1e3: p_y rounds to 1 (or 0) in float64, the margin does not.
  big = np.array([[1000.0, 0.0, -5.0], [-1000.0, 3.0, 0.0]])
  np.testing.assert_allclose(privacy.logit_confidence(big, np.array([0, 0])),
                             [1000.0 - np.log(1 + np.exp(-5.0)), -1000.0 - 3.0
                              - np.log1p(np.exp(-3.0))], rtol=1e-12)
  with pytest.raises(ValueError, match=r"logits must be \[..., N, K\] and labels \[N\]"):
    privacy.logit_confidence(logits, labels[:4])
  with pytest.raises(ValueError, match=r"labels must be integers in \[0, 4\)"):
    privacy.logit_confidence(logits, np.array([0, 1, 2, 4, 1]))


def _loop_epsilon(unlearned, retrained, delta=1e-5, cap=50.0):
  """The challenge's rules, literally: every threshold, every model, in Python loops."""
  u, r = list(unlearned), list(retrained)
  pos, neg = (r, u) if np.median(r) > np.median(u) else (u, r)
  pd, nd = max(pos) - min(pos), max(neg) - min(neg)
  if min(pd, nd) / max(pd, nd) < 0.01:
    return cap
  rules = []
  lo, hi = min(pos + neg), max(pos + neg)
  for t in np.linspace(lo, hi, math.ceil((hi - lo) * 100)):
    rules.append((pos, neg, lambda c, t=t: c >= t))
  peaky, wide = (neg, pos) if pd >= nd else (pos, neg)
  width = min(pd, nd)
  lo, hi = min(peaky) + width - 2, max(peaky) + 2
  for right in np.linspace(lo, hi, math.ceil((hi - lo) * 100)):
    for left in np.linspace(right - width - 2, right - width + 2, 400):
      rules.append((peaky, wide, lambda c, a=left, b=right: a <= c <= b))
  best = None
  for p, n, predict in rules:
    fnr = sum(not predict(c) for c in p) / len(p)
    fpr = sum(predict(c) for c in n) / len(n)
    if fpr == 0 and fnr == 0:
      e = math.inf
    elif fpr == 0 or fnr == 0:
      continue
    else:
      cands = [math.log(1 - delta - a) - math.log(b) for a, b in ((fpr, fnr), (fnr, fpr))
               if 1 - delta - a > 0]
      if not cands:
        continue
      e = max(0.0, max(cands))
    best = e if best is None else max(best, e)
  return cap if best is None else min(best, cap)


@pytest.mark.parametrize("seed,shift,scale", [(0, 0.0, 1.0), (1, 0.7, 1.0), (2, 2.5, 0.6),
                                              (3, -1.2, 2.0)])
def test_epsilon_equals_a_literal_loop_over_every_threshold(seed, shift, scale):
  rng = np.random.default_rng(seed)
  u = rng.normal(shift, scale, size=6)
  r = rng.normal(0.0, 1.0, size=7)
  assert privacy.example_epsilon(u, r) == pytest.approx(_loop_epsilon(u, r), abs=1e-9)


def test_epsilon_of_hand_built_ensembles_whose_answers_are_derived_by_hand():
  """Four models a side; each answer derived from the challenge's rules (metric.py) alone.

  With 4 and 4 models the rates are multiples of 1/4, and a threshold with exactly one of
  FPR, FNR at 0 is discarded, so the largest finite ε is FPR = FNR = 1/4:
  log(1 - δ - 1/4) - log(1/4) = log(3 - 4δ).
  """
  d = 1e-5
  # (a) Separated: any single threshold in (3, 10] has FPR = FNR = 0 -> inf -> cap 50.
  a = ([0.0, 1.0, 2.0, 3.0], [10.0, 11.0, 12.0, 13.0])
  # (b) The same sample: every rule has TPR = FPR, so both logs are <= 0 -> ε = 0.
  b = ([0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0, 3.0])
  # (c) Retrained positive (median 5 > 1.5). t in (3, 4]: 3/4 retrained, 1/4 unlearned
  # (the 5) above it -> log(3 - 4δ); no interval of width >= 2 around the retrained
  # (the narrower, range 4) holds 3 of them without the 5.
  c = ([0.0, 1.0, 2.0, 5.0], [3.0, 4.0, 6.0, 7.0])
  # (d) The interval rule wins: the retrained are peaky (range 1.5), the unlearned spread
  # (range 6.2). The best single threshold, t in (0, 0.5], reaches only FNR 1/4, FPR 2/4:
  # log(1 - δ - 1/2) - log(1/4) = log(2 - 4δ); the interval [0, 1.2] holds 3/4 retrained
  # and 1/4 unlearned (the 0.7): log(3 - 4δ).
  e = ([-3.0, -2.8, 0.7, 3.2], [0.0, 0.5, 1.0, 1.5])
  # (e) A collapsed unlearned distribution: range 0.003 < 1% of 3 -> the cap at once.
  f = ([1.0, 1.001, 1.002, 1.003], [0.0, 1.0, 2.0, 3.0])
  want = [50.0, 0.0, math.log(3 - 4 * d), math.log(3 - 4 * d), 50.0]
  got = [privacy.example_epsilon(np.array(u), np.array(r)) for u, r in (a, b, c, e, f)]
  assert got == pytest.approx(want, abs=1e-9)
  # F over (a), (b), (c) as one forget set of 3 examples: N = 4 gives buckets up to
  # ceil(log 3) = 2, i.e. [0, .5) 1, [.5, 1) 1/2, [1, 1.5) 1/4, [1.5, 2) 1/8: points 0, 1
  # and 1/4 (log 3 = 1.0986): F = 1.25 / 3.
  quality, eps = privacy.forgetting_quality(np.array([a[0], b[0], c[0]]).T,
                                            np.array([a[1], b[1], c[1]]).T)
  assert quality == pytest.approx(1.25 / 3, abs=1e-12)
  assert eps == pytest.approx(want[:3], abs=1e-9)


def test_epsilon_edge_cases_the_rules_define():
  rng = np.random.default_rng(1)
  r = rng.normal(size=64)
  assert privacy.example_epsilon(r.copy(), r) == 0.0               # the same sample
  assert privacy.example_epsilon(r + 20.0, r) == 50.0              # separated: capped
  # A collapsed unlearned distribution (range < 1% of the other's): the cap directly.
  assert privacy.example_epsilon(np.full(64, 0.3) + 1e-4 * rng.normal(size=64), r) == 50.0
  assert privacy.example_epsilon(np.ones(8), np.ones(8)) == 0.0
  assert privacy.example_epsilon(np.ones(8), np.zeros(8)) == 50.0
  with pytest.raises(ValueError, match="at least 2 finite confidences"):
    privacy.example_epsilon(np.array([1.0, np.nan]), r)


def test_bucket_points_and_the_final_score_by_hand():
  # 16 models: ceil(log 15) = 3, six buckets of width 0.5 worth 1 ... 1/32.
  eps = np.array([0.0, 0.49, 0.5, 2.9, 3.0, 50.0])
  np.testing.assert_allclose(privacy.bucket_points(eps, 16), [1, 1, 0.5, 1 / 32, 0, 0])
  assert privacy.final_score(0.5, 0.9, 1.0, 0.8, 0.9) == pytest.approx(0.5 * 0.9 * 0.8 / 0.9)
  with pytest.raises(ValueError, match="at least 3 unlearned models"):
    privacy.bucket_points(eps, 2)


def test_forgetting_quality_is_one_for_the_same_models_and_zero_for_separated_ones():
  rng = np.random.default_rng(2)
  r = rng.normal(size=(32, 10))
  f_same, eps = privacy.forgetting_quality(r.copy(), r)
  assert f_same == 1.0 and np.all(eps == 0.0)
  f_apart, eps = privacy.forgetting_quality(r + 30.0, r)
  assert f_apart == 0.0 and np.all(eps == 50.0)


def test_retrain_against_a_disjoint_half_of_retrain_is_near_the_ideal():
  # 256 retrained models of one distribution, split in two halves of 128: each example's
  # ε comes from sampling noise alone. The challenge's rules leave a noise floor: the
  # best threshold in a tail catches, say, 3 models of one half and 1 of the other, an
  # ε of log 3 = 1.1 at any N (measured median 1.6 and F 0.17-0.21 for N = 16...256).
  # That floor is the ideal a method can reach; half a standard deviation of shift
  # already lowers F, one lowers it to a few hundredths. LiRA is at chance.
  rng = np.random.default_rng(3)
  models = rng.normal(loc=rng.normal(size=40), scale=rng.uniform(0.5, 2, size=40),
                      size=(256, 40))
  halves = models[:128], models[128:]
  f, eps = privacy.forgetting_quality(*halves)
  assert 0.12 < f < 0.3 and 1.0 < np.median(eps) < 2.2
  sd = models.std(0)
  f_half = privacy.forgetting_quality(halves[0] + 0.5 * sd, halves[1])[0]
  f_one = privacy.forgetting_quality(halves[0] + sd, halves[1])[0]
  assert f > f_half > f_one and f_one < 0.06
  shadow, target = privacy.split_models(128, seed=0)
  attack = privacy.lira(halves[0][shadow], halves[1][shadow], halves[0][target],
                        halves[1][target])
  assert abs(attack["auc"] - 0.5) < 0.03
  # KLoM's 20 bins over 128 + 128 margins have their own floor (measured 0.26; 0.48 at half
  # a standard deviation of shift, 1.08 at one).
  klom_same = np.mean(privacy.klom(*halves))
  assert klom_same < 0.35 and np.mean(privacy.klom(halves[0] + sd, halves[1])) > 3 * klom_same


def _pairwise_auc(pos, neg):
  return np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])


def test_lira_auc_and_tpr_against_pairwise_counts():
  rng = np.random.default_rng(4)
  base = rng.normal(size=30)
  su, tu = base + 1.0 + rng.normal(size=(16, 30)), base + 1.0 + rng.normal(size=(8, 30))
  sr, tr = base + rng.normal(size=(16, 30)), base + rng.normal(size=(8, 30))
  for variance in ("per_example", "fixed"):
    out = privacy.lira(su, sr, tu, tr, variance=variance)
    pos, neg = out["scores_unlearned"], out["scores_retrained"]
    assert out["auc"] == pytest.approx(_pairwise_auc(pos.ravel(), neg.ravel()))
    assert out["per_example_auc"][3] == pytest.approx(_pairwise_auc(pos[:, 3], neg[:, 3]))
    assert 0.7 < out["auc"] < 0.85   # one standard deviation apart: Phi(1/sqrt 2) = 0.76
  # Fixed variance: the Gaussians share the pooled variance, Λ is linear in c.
  out = privacy.lira(su, sr, tu, tr, variance="fixed")
  c = np.linspace(-3, 3, 5)[:, None] + np.zeros((1, 30))
  lam = privacy.lira(su, sr, c, c, variance="fixed")["scores_unlearned"][:, 0]
  assert np.allclose(np.diff(lam, 2), 0.0, atol=1e-9)
  pos, neg = np.array([5.0, 4.0, 3.0, 0.5]), np.arange(100, dtype=float) / 100
  # At most 1 negative of 100 may score above the threshold: t = 0.98, 3 of 4 positives.
  assert privacy.tpr_at_fpr(pos, neg, 0.01) == 0.75


def test_lira_is_chance_on_the_same_distribution_and_certain_when_separated():
  rng = np.random.default_rng(5)
  same = [rng.normal(size=(32, 50)) for _ in range(4)]
  out = privacy.lira(*same)
  assert abs(out["auc"] - 0.5) < 0.05 and out["tpr_at_1%"] < 0.05
  apart = privacy.lira(same[0] + 10, same[1], same[2] + 10, same[3])
  assert apart["auc"] == 1.0 and apart["tpr_at_1%"] == 1.0 and apart["tpr_at_0.1%"] == 1.0
  with pytest.raises(ValueError, match="shadow_retrained must be .models, examples."):
    privacy.lira(same[0], same[1][:1], same[2], same[3])
  shadow, target = privacy.split_models(10, seed=0)
  assert len(shadow) == 5 and sorted(np.concatenate([shadow, target])) == list(range(10))


def test_klom_by_hand():
  rng = np.random.default_rng(6)
  r = rng.normal(size=(50, 4))
  np.testing.assert_allclose(privacy.klom(r.copy(), r), 0.0, atol=1e-12)
  # No shared bin: q is floored to 1e-5 where p lives, then renormalised.
  apart = privacy.klom(r + 40.0, r)
  assert np.all(apart > 5) and np.all(apart < math.log((1 + 1e-5) / 1e-5) + 1e-9)
  # Two models each, margins 0, 1 vs 0, 0: 20 bins over [0, 1]; p = (1/2 at bin 0, 1/2 at
  # bin 19), q = (1 at bin 0), floored at bin 19 to 1e-5 and renormalised.
  q0, q19 = 1 / (1 + 1e-5), 1e-5 / (1 + 1e-5)
  expected = 0.5 * math.log(0.5 / q0) + 0.5 * math.log(0.5 / q19)
  assert privacy.klom(np.array([[0.0], [1.0]]), np.array([[0.0], [0.0]]))[0] == \
      pytest.approx(expected)


def test_the_privacy_report_scores_each_line_per_epoch_and_leaves_tuning_lines_out(tmp_path):
  """The report's privacy table from stored confidences files, as a run writes them: a
  line of the reference's distribution scores F near Retrain's floor, a shifted line F 0;
  per-epoch files give the F-by-epoch table; a sweep's tuning line is not scored."""
  from experiments._spec import Experiment, Original, Unit
  from experiments.report import load
  from experiments.report import privacy as report_privacy
  from fmjax import checkpoints
  rng = np.random.default_rng(0)
  units = (Unit("r", "retrain", "retrain"), Unit("r", "ref", "retrain", seed_offset=1000),
           Unit("r", "same", "finetune"), Unit("r", "apart", "finetune"),
           Unit("r", "apart (tuning)", "finetune", tuning=True, seed_offset=2000))
  exp = Experiment("x", "x", {"main": Original("digits", "small_cnn")}, units,
                   seeds=tuple(range(8)), tables=("privacy",))
  index = np.arange(30)
  center = rng.normal(size=30)
  results = []
  for u in units:
    for seed in u.seeds(exp.seeds):
      d = tmp_path / f"{u.line}-{seed}"
      d.mkdir()
      shift = 0.0 if u.line in ("retrain", "ref", "same") else 40.0
      epochs = {}
      for k, s in enumerate((40.0, shift)):   # the edit far off; the last epoch at shift
        arrays = {"forget": center + s + rng.normal(size=30), "forget_index": index}
        epochs[str(k)] = {"file": f"e{k}.npz",
                          "sha256": checkpoints.write_arrays(d / f"e{k}.npz", arrays)}
      final = {"file": "e1.npz", "sha256": epochs["1"]["sha256"], "examples": {}}
      if u.line == "same":
        final["epochs"] = epochs
      summary = {"confidences": final,
                 "protocol": {"UA": 0.1, "RA": 0.99, "TA": 0.85, "MIA": 0.2}}
      records = [{"phase": "finetune", "seconds": {"finetune": 2.0}}]
      results.append(load.UnitResult(u, seed, records, summary, workdir=d))
  found = report_privacy.all_scores(exp, results)["r"]
  assert set(found) == {"retrain", "same", "apart"}   # the tuning line only picks a rate
  assert found["same"]["F"] > 0.1 and found["apart"]["F"] == 0.0
  assert found["apart"]["auc"] == 1.0 and abs(found["same"]["auc"] - 0.5) < 0.2
  text = report_privacy.privacy_table(exp, results)
  assert "| r | same | 8 vs 8 |" in text and "apart (tuning)" not in text
  rows = [ln for ln in text.splitlines() if ln.startswith("| r | same | 0.000 |")]
  assert len(rows) == 1   # F by epoch: 0 after the edit (far off), > 0.1 at the end
  assert float(rows[0].split("|")[4]) == pytest.approx(found["same"]["F"], abs=5e-4)
  # A damaged epoch file is named, with its fix.
  (tmp_path / "same-3" / "e0.npz").write_bytes(b"damaged")
  with pytest.raises(ValueError, match=r"same-3/e0.npz cannot be read .*delete the unit's"):
    report_privacy.privacy_table(exp, results)


def test_rank_agreement_of_per_example_and_population_orders():
  from experiments.report import privacy as report
  np.testing.assert_array_equal(report.ranks([3.0, 1.0, 1.0, 2.0]), [4.0, 1.5, 1.5, 3.0])
  assert report.rank_correlation([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
  assert report.rank_correlation([1, 2, 3], [1, 4, 9]) == pytest.approx(1.0)   # monotone
  # Ties: ranks (1.5, 1.5, 3) against (1, 2, 3): cov 1.5 / sqrt(1.5 * 2) = sqrt(3) / 2.
  assert report.rank_correlation([1, 1, 2], [1, 2, 3]) == pytest.approx(math.sqrt(3) / 2)
  assert math.isnan(report.rank_correlation([1, 1, 1], [1, 2, 3]))

  def line(f, auc, klom, mia, gap):
    return {"F": f, "auc": auc, "klom": klom, "MIA": mia, "gap": gap}
  # Three methods: the per-example orders (1 - F, AUC, KLoM) all rank a < b < c; the
  # population MIA's distance to Retrain's (0.2) ranks them c < b < a, the gap a < b < c.
  found = {"s": {"retrain": line(0.2, 0.5, 3.0, 0.20, 0.8),
                 "a": line(0.10, 0.6, 4.0, 0.50, 1.0),
                 "b": line(0.05, 0.7, 5.0, 0.30, 2.0),
                 "c": line(0.01, 0.9, 6.0, 0.21, 7.0)}}
  text = report.agreement_table(found)
  rows = [r for r in text.splitlines() if r.startswith("| s |")]
  assert rows == ["| s | 1 − F | 3 | -1.00 | +1.00 |", "| s | U-LiRA AUC | 3 | -1.00 | +1.00 |",
                  "| s | KLoM | 3 | -1.00 | +1.00 |"]
  assert report.agreement_table({"s": {k: found["s"][k] for k in ("retrain", "a", "b")}}) is None
