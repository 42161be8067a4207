"""The GPU study kit's machinery on the CPU (scripts/gpu_study.sh --quick):
arm-seeds side by side, each stopped cleanly by its own time limit and scored
at the <mask> positions against both references; the kit's own deadline
stops what still runs; a budget too short is refused before anything is written."""

import json
import math
import subprocess
import sys
import time

import pytest
import torch

from harness import CHILD_ENV, REPO_ROOT, run_module
from maskplug_lab.experiments.study import Job, StudySettings, arm_dir
from maskplug_lab.experiments.study_runner import run_jobs

KIT = ["bash", str(REPO_ROOT / "scripts" / "gpu_study.sh"), "--quick"]
KIT_MODULE = "maskplug_lab.experiments.gpu_study"  # what gpu_study.sh runs (reruns and refusals: in process)


def test_quick_kit_stops_each_arm_at_its_time_limit_and_scores_what_it_reached(brown_pos_data, tmp_path):
    out = tmp_path / "kit"
    # 100,000 updates planned and 26 s of budget: every arm stops on its training clock, not at its last update
    command = KIT + ["--data", str(brown_pos_data), "--out", str(out), "--arms", "stock,random,mae_lm",
                     "--updates", "100000", "--budget", "26"]  # fmt: skip
    result = subprocess.run(command, env=CHILD_ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / "study_gpu.json").read_text())
    rows = report["arms"]
    assert list(rows) == ["stock", "random", "mae_lm"] and not report["missing"]
    assert report["updates_planned"] == 100000 and 5 <= report["train_seconds_limit"] <= 6.1
    unigram = rows["random"]["unigram_at_mask_bits"][0]
    for arm, row in rows.items():
        assert 0 < row["updates"] < 100000, arm
        assert row["notes"] == [f"stopped by its time limit at update {row['updates']} of 100000"], arm
        assert math.isfinite(row["at_mask_bits"][0]) and row["unigram_at_mask_bits"][0] == unigram
        assert row["neighbours_at_mask_bits"][0] < unigram
        log = (out / "runs" / arm / "seed1" / "train.log").read_text()
        assert "Stopping training due to cumulative_training_time" in log, arm
    for arm in ("stock", "mae_lm"):
        against = rows[arm]["vs_random_equal_updates"]
        assert against["verdict"] == "too few seeds"
        assert against["at_updates"] == min(rows[arm]["updates"], rows["random"]["updates"])
    assert "vs_random_equal_updates" not in rows["random"] and rows["mae_lm"]["decoder_loss"]
    table = (out / "study_gpu.md").read_text()
    assert "| stock | 1 |" in table and "| mae_lm (decoder) | 1 |" in table and table in result.stdout
    # a rerun finds every arm-seed done and writes the same report
    again = run_module(KIT_MODULE, command[2:])
    assert again.returncode == 0 and "(3 done already)" in again.stdout, again.stderr[-3000:]
    assert json.loads((out / "study_gpu.json").read_text())["arms"] == rows


def test_the_kit_deadline_stops_a_running_arm_and_its_fairseq_train(brown_pos_data, tmp_path):
    settings = StudySettings(data=str(brown_pos_data), out=str(tmp_path), configuration="gpu_study_quick",
                             probe_tokens=0, updates=1_000_000)  # fmt: skip
    outcome = run_jobs([Job("random", 1)], settings, parallel=1, deadline=time.time() + 10)
    assert outcome == {"failed": [], "stopped": [Job("random", 1)]}
    assert not (arm_dir(settings, "random", 1) / "result.json").exists()
    time.sleep(1)
    left = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout
    assert not left.strip(), f"processes left running: {left}"


def test_a_budget_too_short_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "kit"
    result = run_module(KIT_MODULE, ["--quick", "--out", out, "--data", tmp_path / "data", "--budget", "20"])
    assert result.returncode != 0
    assert "--budget 20: starting and scoring the arms take 20 s" in result.stderr and "give at least 25 s" in result.stderr
    assert not out.exists() and not (tmp_path / "data").exists()


def test_the_gpu_session_says_plainly_when_there_is_no_gpu(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible: scripts/gpu_session.sh would run for real")
    session = ["bash", str(REPO_ROOT / "scripts" / "gpu_session.sh")]
    env = dict(CHILD_ENV, PYTHON=sys.executable)  # the suite's Python: it holds fairseq
    result = subprocess.run(session + [str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 3 and "no CUDA device is visible" in result.stderr and "nothing was run" in result.stderr
    usage = subprocess.run(session, env=CHILD_ENV, capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "bash scripts/gpu_session.sh OUT [--wheels DIR]" in usage.stderr
