"""scripts/study.py --quick: every stage of the study on the 60-document
slice in seconds (arm-seed jobs, probes, genre fine-tuning with stock fairseq,
verdicts, plots), and a rerun that skips what is done."""

import json
import subprocess
import sys

import pytest

from harness import CHILD_ENV, REPO_ROOT


@pytest.fixture(scope="module")
def quick_study(brown_pos_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "out"
    command = [sys.executable, str(REPO_ROOT / "scripts" / "study.py"), "--quick", "--data", str(brown_pos_data),
               "--out", str(out), "--arms", "random,cosine", "--seeds", "1", "--jobs", "2", "--no-mechanisms"]  # fmt: skip
    first = subprocess.run(command, env=CHILD_ENV, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return out, command, first.stdout


def test_quick_study_writes_every_output(quick_study):
    out, _, stdout = quick_study
    for arm in ("random", "cosine"):
        for seed in (1,):
            result = json.loads((out / "runs" / arm / f"seed{seed}" / "result.json").read_text())
            assert result["curve"][-1]["updates"] == 30 and result["train_seconds"] > 0
            assert 0 < result["masked_token_accuracy"] < 1 and 0 < result["genre_accuracy"] <= 1
            assert len(result["pos_probe"]["layer_accuracy"]) == 3  # embeddings + 2 layers
    report = json.loads((out / "study.json").read_text())
    cosine = report["summary"]["cosine"]
    assert cosine["vs_random_equal_updates"]["verdict"] in ("ahead", "behind", "within noise")
    assert cosine["vs_random_equal_seconds"]["verdict"] in ("ahead", "behind", "within noise")
    assert report["unigram_bits"] > 0 and len(report["baselines"]["random_init"]) == 3
    markdown = (out / "study.md").read_text()
    assert "| cosine | 1 |" in markdown and "Verdicts against random masking" in markdown
    assert (out / "curves.png").stat().st_size > 10_000 and (out / "probes.png").stat().st_size > 10_000
    assert "done cosine seed 1: valid" in stdout and "ETA" in stdout


def test_a_rerun_skips_finished_arm_seeds(quick_study):
    out, command, _ = quick_study
    again = subprocess.run(command, env=CHILD_ENV, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 done already, 0 to run" in again.stdout
