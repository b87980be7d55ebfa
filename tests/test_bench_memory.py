"""`make bench-memory` as users run it, shrunk to one small row: a scoring program compiled in a
fresh process, its memory read, the table and its verdict; the table rebuilt from the rows."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

BENCH = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "bench_memory.py"


def bench(*args):
  return subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True,
                        timeout=600)


def test_one_row_of_the_memory_bench_and_its_table(tmp_path):
  out = bench("--pairs", "mnist/resnet20", "--passes", "fisher")
  assert out.returncode == 0, out.stderr[-2000:]
  rows = [json.loads(x) for x in out.stdout.splitlines() if x.startswith("{")]
  assert len(rows) == 1 and rows[0]["programs"] == 1 and 0 < rows[0]["temp_gb"] < 24
  assert "| mnist | resnet20 | " in out.stdout and "| 1 |" in out.stdout
  assert "every pass of every pair fits in 24 GB" in out.stdout
  # The table again from the printed rows, plus a row whose process failed.
  failed = {"dataset": "mnist", "model": "vgg16", "pass": "fisher", "error": "exit -9: killed"}
  (tmp_path / "rows.jsonl").write_text(out.stdout + json.dumps(failed) + "\n")
  again = bench("--rows", str(tmp_path / "rows.jsonl"))
  assert again.returncode == 0
  assert "| mnist | vgg16 | failed |" in again.stdout
  assert "failed: mnist/vgg16 fisher: exit -9: killed" in again.stdout


def test_an_unknown_pair_or_pass_is_one_error_line():
  out = bench("--pairs", "mnist/resnet99", "--passes", "fisher")
  assert out.returncode == 2 and out.stderr.startswith("error: unknown pass or pair")
  assert "Traceback" not in out.stderr
