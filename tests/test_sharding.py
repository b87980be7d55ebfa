"""Data parallelism over forced host devices: results must not depend on the device count.

Each test runs in its own subprocess with 8 forced host devices
(``fmjax.xla_flags.host_devices``: the flags must be set before JAX starts), so the rest
of the suite keeps one device.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings

import pytest

from fmjax import xla_flags

FISHER_SCRIPT = textwrap.dedent('''
    from fmjax import xla_flags; xla_flags.configure()   # a script is an entry point
    import json, jax, jax.numpy as jnp, numpy as np
    import fmjax
    from fmjax.models import get_model
    from tests.conftest import TinyCNN, init_with_stats, rel_error
    assert len(jax.local_devices()) == 8
    out = {}
    x = jax.random.normal(jax.random.key(1), (37, 8, 8, 2))   # 37: no device count divides it
    y = jax.random.randint(jax.random.key(2), (37,), 0, 4)
    model = TinyCNN()
    params, state = init_with_stats(model, x)
    for kind in ("empirical", "true"):
      for path in ("per_layer", "vmap"):
        ref = fmjax.make_fisher_diag(model, state, kind=kind, path=path, chunk_size=5,
                                     devices=1).sum(params, {"image": x, "label": y})
        for n in (2, 8):
          fd = fmjax.make_fisher_diag(model, state, kind=kind, path=path, chunk_size=5,
                                      devices=n)
          got = fd.sum(params, {"image": x, "label": y})
          out[f"{kind}/{path}/{n}"] = [rel_error(got.total, ref.total),
                                       float(got.count), float(ref.count)]
    try:
      fmjax.make_fisher_diag(model, state, devices=9)
    except ValueError as e:
      out["error"] = str(e)
    print(json.dumps(out))
''')


STEPS_SCRIPT = textwrap.dedent('''
    from fmjax import xla_flags; xla_flags.configure()   # a script is an entry point
    # Ten training steps of a BatchNorm CNN on real digits, on 1, 2 and 8 devices: batch
    # 32 divides every device count; batch 37 pads with zero-weight examples on 2 and 8.
    import json, jax, jax.numpy as jnp, numpy as np
    from fmjax import data, evaluation, finetuning, runner, sharding, steps
    from fmjax.models import get_model
    from tests.conftest import rel_error
    ds = data.load_dataset("digits")
    images, labels = ds.train_images[:200], ds.train_labels[:200]
    model = get_model("small_cnn", 10)
    proc = finetuning.finetune_procedure(0.01, batch_size=1, momentum=0.9, weight_decay=1e-4)
    init = steps.init_train_state(model, steps.sgd(momentum=0.9, weight_decay=1e-4),
                                  jax.random.key(0), (1, 8, 8, 1))

    def run(n, batch, augment):
      mesh = sharding.mesh_or_none(n)
      step = runner.make_step(model, proc.stages[0], proc, augment=augment, mesh=mesh)
      state = sharding.replicate(init, mesh)
      x, y = sharding.replicate((jnp.asarray(images), jnp.asarray(labels)), mesh)
      losses = []
      for t in range(10):
        idx = np.random.default_rng(t).permutation(200)[:batch]
        state, m = step(state, None, x, y, idx, None, jax.random.key(t), np.float32(0.01),
                        np.float32(0), None, ds.mean, ds.std)
        losses.append(float(m["loss"]))
      if mesh is not None:
        assert all(len(p.sharding.device_set) == n for p in jax.tree.leaves(state.params))
      predict = evaluation.make_predict_fn(model, ds.mean, ds.std, mesh)
      logits = evaluation.predict_all(predict, state.params, state.model_state, images,
                                      batch_size=45)
      return state, losses, logits

    out = {}
    for batch in (32, 37):
      for augment in (False, True):
        ref, ref_losses, ref_logits = run(1, batch, augment)
        for n in (2, 8):
          got, losses, logits = run(n, batch, augment)
          out[f"{batch}/{augment}/{n}"] = [
              rel_error(got.params, ref.params), rel_error(got.model_state, ref.model_state),
              max(abs(a - b) for a, b in zip(losses, ref_losses)),
              float(np.abs(logits - ref_logits).max() / np.abs(ref_logits).max())]
    print(json.dumps(out))
''')

UNLEARN_SCRIPT = textwrap.dedent('''
    from fmjax import xla_flags; xla_flags.configure()   # a script is an entry point
    # Whole unlearning runs (edit, fine-tuning epochs, readouts, relearn) on 1, 2 and 8
    # devices; batch 37 and scoring batch 37 pad on 2 and 8 devices.
    import json, sys, tempfile
    from fmjax import data, training, unlearning
    ds = data.load_dataset("digits")
    tmp = tempfile.mkdtemp()
    training.train(training.default_config("digits", "small_cnn", epochs=3), f"{tmp}/train",
                   dataset=ds, progress=False, devices=2)
    out = {}
    for method in sys.argv[1].split(","):
      for n in (1, 2, 8):
        cfg = unlearning.make_config(
            f"{tmp}/train", method, epochs=2, relearn_epochs=1, eval_limit=300, batch_size=37,
            **unlearning.for_method(method, dict(
                score_batch_size=37, fisher_chunk=16, hessian_examples=64, cg_iters=3,
                ig_steps=3, ig_limit=40)),
            # Random labels at a large rate throw this small model into chaos: a run at a
            # well-conditioned rate checks the arithmetic, not the chaos.
            lr=0.01 if method == "salun" else None)
        res = unlearning.unlearn(cfg, f"{tmp}/{method}-{n}", dataset=ds, progress=False,
                                 devices=n)
        out[f"{method}/{n}"] = {
            "final": {k: v for k, v in res.summary["final"].items() if isinstance(v, float)},
            "edit_loss": res.summary["mask_only"]["forget_train_loss"],
            "masked": res.records[1]["masked_fraction"],
            "relearn": res.summary["relearn_steps"]}
    print(json.dumps(out))
''')


def _run(script: str, devices: int = 8, args: tuple[str, ...] = ()) -> dict:
  env = {**os.environ, "XLA_FLAGS": xla_flags.host_devices(devices), "JAX_PLATFORMS": "cpu"}
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  for attempt in (1, 2):
    proc = subprocess.run([sys.executable, "-c", script, *args], env=env, cwd=root,
                          text=True, capture_output=True, timeout=900)
    if proc.returncode == 0 or XLA_RENDEZVOUS_ABORT not in proc.stderr or attempt == 2:
      break
    # XLA's CPU runtime ended the process because one simulated device never reached a
    # collective (once in CI on 2 shared cores; never here): that is XLA's scheduling,
    # not fmjax's arithmetic, so the run goes again once, and says so.
    warnings.warn(f"XLA aborted a collective on forced host devices; rerunning once: "
                  f"{_abort_line(proc.stderr)}", stacklevel=2)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


XLA_RENDEZVOUS_ABORT = "Termination timeout for `"


def _abort_line(stderr: str) -> str:
  return next((ln for ln in stderr.splitlines() if XLA_RENDEZVOUS_ABORT in ln), "")[:300]


@pytest.fixture(scope="module")
def fisher_results():
  return _run(FISHER_SCRIPT)


@pytest.mark.scale
@pytest.mark.parametrize("kind", ["empirical", "true"])
@pytest.mark.parametrize("path", ["per_layer", "vmap"])
@pytest.mark.parametrize("n", [2, 8])
def test_fisher_sums_do_not_depend_on_the_device_count(fisher_results, kind, path, n):
  err, count, ref_count = fisher_results[f"{kind}/{path}/{n}"]
  assert err < 1e-6
  assert count == ref_count == 37   # padding examples are never counted


@pytest.mark.scale
def test_more_devices_than_the_process_has_is_a_clear_error(fisher_results):
  assert "devices must be an integer in 1..8" in fisher_results["error"]


@pytest.fixture(scope="module")
def step_results():
  return _run(STEPS_SCRIPT)


@pytest.mark.scale
@pytest.mark.parametrize("batch", [32, 37])
@pytest.mark.parametrize("augment", [False, True])
@pytest.mark.parametrize("n", [2, 8])
def test_ten_training_steps_do_not_depend_on_the_device_count(step_results, batch, augment, n):
  params_err, stats_err, loss_err, logits_err = step_results[f"{batch}/{augment}/{n}"]
  assert params_err < 1e-5    # parameters after ten steps
  assert stats_err < 1e-5     # BatchNorm running statistics: padding never counted
  assert loss_err < 1e-5      # every step's loss
  assert logits_err < 1e-5    # sharded evaluation of the result


def _compare_runs(results: dict, method: str, loss_tol: float) -> None:
  ref = results[f"{method}/1"]
  for n in (2, 8):
    got = results[f"{method}/{n}"]
    assert got["masked"] == ref["masked"]
    assert got["relearn"] == ref["relearn"]
    for k, v in ref["final"].items():
      # Accuracies exactly; losses to loss_tol; the MIA attacks are classifiers fitted on
      # confidences, and one that differs in the 7th digit may flip one example near their
      # decision boundary (1/133 forget examples here).
      tol = loss_tol * abs(v) if "loss" in k else 0.01 if k.startswith("mia_") else 0.0
      assert abs(got["final"][k] - v) <= tol, (method, n, k, got["final"][k], v)
    assert abs(got["edit_loss"] - ref["edit_loss"]) <= loss_tol * abs(ref["edit_loss"])


@pytest.mark.scale
def test_a_whole_unlearning_run_reads_out_the_same_on_1_2_and_8_devices():
  """FisherMask end to end: the Fisher pass, masking, fine-tuning, evaluation, MIA and
  relearn on 1, 2 and 8 devices give the same accuracies, rates, mask and relearn
  steps, and losses equal to 1e-5."""
  _compare_runs(_run(UNLEARN_SCRIPT, args=("fisher_mask",)), "fisher_mask", 1e-5)


SCORING_METHODS = ("activation_mask", "grad_mask", "tfidf", "fisher_noise", "ssd", "scrub",
                   "salun")


@pytest.mark.slow
@pytest.mark.scale
def test_every_scoring_pass_reads_out_the_same_on_1_2_and_8_devices():
  """Channel activations, integrated gradients, per-class means, the true Fisher,
  batch-mean gradients and the procedures (teacher, paired, frozen) on 1, 2 and 8
  devices, with padded scoring and training batches."""
  results = _run(UNLEARN_SCRIPT, args=(",".join(SCORING_METHODS),))
  for method in SCORING_METHODS:
    _compare_runs(results, method, 1e-5)


@pytest.mark.scale
def test_the_command_line_trains_and_unlearns_on_two_devices(tmp_path):
  """`python -m fmjax train/unlearn --devices 2` on digits, with 8 forced devices; a
  device count the machine lacks is one clean error."""
  env = {**os.environ, "XLA_FLAGS": xla_flags.host_devices(8), "JAX_PLATFORMS": "cpu"}
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

  def cli(*args):
    return subprocess.run([sys.executable, "-m", "fmjax", *args], env=env, cwd=root,
                          text=True, capture_output=True, timeout=600)

  train = cli("train", "--dataset", "digits", "--model", "small_cnn", "--epochs", "1",
              "--workdir", str(tmp_path / "t"), "--devices", "2", "--quiet")
  assert train.returncode == 0, train.stderr[-2000:]
  unlearn = cli("unlearn", "--checkpoint", str(tmp_path / "t"), "--method", "fisher_mask",
                "--epochs", "1", "--relearn-epochs", "0", "--batch-size", "37",
                "--workdir", str(tmp_path / "u"), "--devices", "2", "--quiet")
  assert unlearn.returncode == 0, unlearn.stderr[-2000:]
  assert unlearn.stdout.startswith("fisher_mask: forget test 0.000")
  bad = cli("unlearn", "--checkpoint", str(tmp_path / "t"), "--method", "finetune",
            "--workdir", str(tmp_path / "v"), "--devices", "9", "--quiet")
  assert bad.returncode == 2
  assert bad.stderr.strip().splitlines() == [
      "error: devices must be an integer in 1..8 (this process sees 8 cpu device(s)), got 9."]
  assert not (tmp_path / "v").exists()   # refused before anything was written


def test_a_run_xla_aborted_in_a_collective_goes_again_once_and_says_so(tmp_path):
  """The harness above: XLA's rendezvous abort reruns the script once with a warning;
  a second abort, or any other failure, fails the test."""
  flaky = textwrap.dedent(f'''
      import os, sys
      mark = {str(tmp_path / "mark")!r}
      if sys.argv[1] == "always" or not os.path.exists(mark):
        open(mark, "w").close()
        sys.stderr.write(
            "F1203 rendezvous.cc:161] [id=3] {XLA_RENDEZVOUS_ABORT}all gather` of 40 s\\n")
        sys.exit(134)
      print('{{"ok": 1}}')
  ''')
  with pytest.warns(UserWarning, match=r"rerunning once: F1203 .*\[id=3\] Termination"):
    assert _run(flaky, args=("once",)) == {"ok": 1}
  with pytest.raises(AssertionError, match="Termination timeout"), pytest.warns(UserWarning):
    _run(flaky, args=("always",))
  with warnings.catch_warnings():
    warnings.simplefilter("error")   # another failure is not rerun: no warning
    with pytest.raises(AssertionError, match="ZeroDivisionError"):
      _run("1/0")
