"""scripts/study.py --quick: every stage of the study on the 60-document
slice in seconds (arm-seed jobs, probes, genre fine-tuning with stock fairseq,
verdicts, plots), and a rerun that skips what is done."""

import json
import shutil

import pytest

from harness import run_script
from maskplug_lab.experiments.calibration import run_try
from maskplug_lab.experiments.study import Job, StudySettings, arm_dir, curve
from maskplug_lab.experiments.study_report import loss_at, tries_markdown, verdict
from maskplug_lab.experiments.study_runner import chosen_rate, plan_jobs


@pytest.fixture(scope="module")
def quick_study(brown_pos_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "out"
    command = ["--quick", "--data", str(brown_pos_data), "--out", str(out), "--arms", "random,cosine", "--seeds", "1",
               "--jobs", "2", "--no-mechanisms"]  # fmt: skip
    first = run_script("study.py", command)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return out, command, first.stdout


def check_quick_study_writes_every_output(quick_study):
    out, _, stdout = quick_study
    for arm in ("random", "cosine"):
        for seed in (1,):
            result = json.loads((out / "runs" / arm / "lr0.003" / f"seed{seed}" / "result.json").read_text())
            assert result["lr"] == 0.003 and result["flags"][-2:] == ["--lr", "0.003"]
            assert result["curve"][-1]["updates"] == 30 and 0 < result["train_seconds"] < 300
            assert result["curve"][-1]["at_mask_ww_bits"] > 0  # the whole-word yardstick's curve too
            assert result["test_top1_at_mask"] == result["test_scores"]["at_mask"]["top1"]
            assert 0 < result["genre_accuracy"] <= 1
            scores, test = result["final_scores"], result["test_scores"]
            assert result["final_at_mask_bits"] == scores["at_mask"]["loss_bits"]
            assert scores["neighbours_at_mask_bits"] < scores["unigram_at_mask_bits"]
            assert test["at_mask"]["loss_bits"] != scores["at_mask"]["loss_bits"]  # another split
            assert test["whole_words"]["count"] > 0 and test["whole_words"]["unigram_bits"] > 0
            assert result["collapsed"] == (scores["spread_at_mask_bits"] < 0.01)  # 30 updates: at the unigram
            assert len(result["pos_probe"]["layer_accuracy"]) == 3  # embeddings + 2 layers
    report = json.loads((out / "study.json").read_text())
    assert report["learning_rates"]["chosen"] == {"random": 0.003, "cosine": 0.003}
    cosine = report["summary"]["cosine"]
    assert cosine["lr"] == 0.003 and cosine["grid"]["0.003"]["at_mask_bits"] > 0
    assert cosine["vs_random_equal_updates"]["verdict"] == "too few seeds"
    for axis in ("tokens", "seconds"):
        assert cosine[f"vs_random_equal_{axis}"]["verdict"] == "too few seeds"  # one seed each
        assert cosine[f"equal_{axis}"] > 0
    assert len(report["baselines"]["random_init"]) == 3 and len(report["genre_random_init"]) == 1
    markdown = (out / "study.md").read_text()
    assert "| cosine | 0.003 | 1 | standard |" in markdown and "Verdicts against random masking" in markdown
    assert "Learning-rate grid" in markdown and "randomly initialised encoder fine-tuned the same way" in markdown
    verdicts = next(line for line in markdown.splitlines() if line.startswith("| cosine | ") and "(SE)" not in line
                    and "no verdict: collapsed" in line)  # fmt: skip
    assert verdicts.count("no verdict: collapsed") == 4  # the loss verdicts; the probes' stand
    assert (out / "curves.png").stat().st_size > 10_000 and (out / "probes.png").stat().st_size > 10_000
    assert "done cosine lr 0.003 seed 1: loss at <mask>" in stdout
    headline = (out / "headline.md").read_text()
    assert "| cosine | 0.003 | 1 |" in headline and "collapsed (seed 1): no verdict" in headline  # 30 updates


def check_a_rerun_skips_finished_arm_seeds(quick_study):
    out, command, _ = quick_study
    again = run_script("study.py", command)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 jobs done already, 0 to run now" in again.stdout


def check_report_only_trains_nothing_and_reports_what_is_finished(quick_study):
    out, command, _ = quick_study
    (out / "study.md").unlink()
    result = run_script("study.py", command + ["--seeds", "1,2", "--report-only"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 jobs done already, report only" in result.stdout
    assert not (out / "runs" / "random" / "lr0.003" / "seed2").exists()
    assert "| cosine | 0.003 | 1 |" in (out / "study.md").read_text()


def test_report_only_without_a_finished_arm_seed_is_refused_before_any_work(brown_pos_data, tmp_path):
    (tmp_path / "out" / "runs" / "random").mkdir(parents=True)  # a started study, nothing finished
    result = run_script("study.py", ["--quick", "--data", brown_pos_data, "--out", tmp_path / "out", "--report-only"])
    assert result.returncode != 0 and "--report-only: no finished job (result.json) under" in result.stderr
    assert not (tmp_path / "out" / "genre").exists()


def test_verdicts_need_a_difference_beyond_twice_the_standard_error():
    random = [9.0, 9.1, 8.9]  # sd 0.1
    assert verdict([8.5, 8.6, 8.4], random)["verdict"] == "ahead"
    assert verdict([9.5, 9.6, 9.4], random)["verdict"] == "behind"
    close = verdict([8.95, 9.05, 8.85], random)  # 0.05 better, SE = 0.1 * sqrt(2/3) = 0.0816
    assert close["verdict"] == "within noise"
    assert close["difference"] == pytest.approx(-0.05) and close["standard_error"] == pytest.approx(0.1 * (2 / 3) ** 0.5)
    assert verdict([0.6, 0.61, 0.59], [0.5, 0.51, 0.49], lower_is_better=False)["verdict"] == "ahead"
    assert verdict([5.0], random)["verdict"] == "too few seeds"  # one seed: its spread is unknown


def test_losses_at_equal_tokens_and_seconds_interpolate_between_evaluations():
    curve = [{"tokens": 100, "seconds": 10, "at_mask_bits": 10.0}, {"tokens": 300, "seconds": 20, "at_mask_bits": 9.0}]
    assert loss_at(curve, "tokens", 200) == pytest.approx(9.5)
    assert loss_at(curve, "seconds", 12.5) == pytest.approx(9.75)
    assert loss_at(curve, "tokens", 50) == 10.0 and loss_at(curve, "seconds", 99) == 9.0  # held at the ends


def check_a_study_continues_from_result_files_alone(quick_study, tmp_path):
    """What docs/study keeps (each result.json, study.json, no checkpoint) is enough to report again."""
    out, command, _ = quick_study
    moved = tmp_path / "continued"
    for result in out.glob("runs/*/lr*/seed*/result.json"):
        target = moved / result.relative_to(out)
        target.parent.mkdir(parents=True)
        shutil.copy(result, target)
    shutil.copy(out / "study.json", moved / "study.json")
    command = command[: command.index("--out") + 1] + [str(moved)] + command[command.index("--out") + 2 :]
    result = run_script("study.py", command + ["--report-only"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| cosine | 0.003 | 1 |" in (moved / "study.md").read_text()
    assert (
        json.loads((moved / "study.json").read_text())["baselines"]
        == json.loads((out / "study.json").read_text())["baselines"]
    )


def test_a_calibration_try_is_recorded_with_its_masked_position_loss_and_not_run_twice(brown_data, tmp_path):
    record = run_try(str(brown_data), tmp_path, "short", "study_quick", 20, ["--dropout", "0"])
    assert record["extra_flags"] == ["--dropout", "0"] and record["train_minutes"] > 0
    scores = record["scores"]
    assert record["below_unigram"] == round(scores["unigram_at_mask_bits"] - scores["at_mask"]["loss_bits"], 4)
    assert scores["at_mask"]["count"] > 0 and scores["neighbours_at_mask_bits"] < scores["unigram_at_mask_bits"]
    (tmp_path / "short" / "checkpoints" / "checkpoint_last.pt").unlink()
    assert run_try(str(brown_data), tmp_path, "short", "study_quick", 20, []) == record  # read back, not retrained
    assert len((tmp_path / "calibration.jsonl").read_text().splitlines()) == 1


def test_training_seconds_survive_a_resume(tmp_path):
    """fairseq's ``wall`` restarts at 0 after a resume; the curve's seconds are
    the updates' own time (interval updates / ups) and keep counting. The
    first record's ups is 0 (fairseq's meter has no elapsed time yet): that
    interval counts at the next record's rate."""

    def train(updates, ups, wall):
        record = {"num_updates": str(updates), "wpb": "1000", "ups": str(ups), "wall": str(wall)}
        return f"x | INFO | train_inner | {json.dumps(record)}"

    def valid(updates, bits):
        return f"x | INFO | valid | {json.dumps({'valid_num_updates': str(updates), 'valid_loss_at_mask': str(bits)})}"

    lines = [train(100, 0, 10), train(200, 10.0, 20), valid(200, 8.0), train(300, 10.0, 30),  # killed after 300
             train(300, 5.0, 0), train(400, 5.0, 0), valid(400, 7.0)]  # resumed from the checkpoint at 200  # fmt: skip
    (tmp_path / "train.log").write_text("\n".join(lines))
    points = curve(tmp_path / "train.log", 200)
    assert [p["updates"] for p in points] == [200, 400] and [p["at_mask_bits"] for p in points] == [8.0, 7.0]
    assert points[0]["seconds"] == pytest.approx(20.0) and points[1]["seconds"] == pytest.approx(20.0 + 200 / 5.0)
    assert points[1]["tokens"] == pytest.approx(400_000)


def test_the_quick_study_writes_reruns_reports_and_continues(quick_study, tmp_path):
    """One quick study (its two arm-seeds trained once, on one worker), checked
    in order: every output; a rerun skips what is finished; --report-only
    trains nothing; the result files alone are enough to report again."""
    check_quick_study_writes_every_output(quick_study)
    check_a_rerun_skips_finished_arm_seeds(quick_study)
    check_report_only_trains_nothing_and_reports_what_is_finished(quick_study)
    check_a_study_continues_from_result_files_alone(quick_study, tmp_path)


def fake_result(arm, lr, seed, at_mask, whole_words=9.0, collapsed=False, probed=False):
    scores = {"at_mask": {"loss_bits": at_mask}, "whole_words": {"loss_bits": whole_words}}
    return {"arm": arm, "lr": lr, "seed": seed, "final_scores": scores, "collapsed": collapsed,
            "pos_probe": {"layer_accuracy": [0.5]} if probed else None}  # fmt: skip


def test_a_rate_is_chosen_on_the_arms_own_yardstick_and_an_edge_winner_extends_the_grid():
    grid = {5e-4: 7.0, 1e-3: 6.5, 2e-3: 6.8, 5e-3: 7.5}
    tried = {lr: fake_result("random", lr, 1, bits) for lr, bits in grid.items()}
    assert chosen_rate("random", tried) == (1e-3, None)
    # a collapsed run is never chosen while another rate did not collapse
    tried[1e-3] = fake_result("random", 1e-3, 1, 6.0, collapsed=True)
    assert chosen_rate("random", tried) == (2e-3, None)
    # whole-word arms choose on the whole-word yardstick
    words = {lr: fake_result("pos", lr, 1, 6.0, whole_words=bits) for lr, bits in grid.items()}
    words[5e-3]["final_scores"]["at_mask"]["loss_bits"] = 1.0  # the standard mask does not decide
    assert chosen_rate("pos", words) == (1e-3, None)
    # the lowest rate wins: try half of it, until the limit
    low = {lr: fake_result("mae_lm", lr, 1, 6.0 + lr * 100) for lr in grid}
    assert chosen_rate("mae_lm", low) == (None, 2.5e-4)
    low[2.5e-4] = fake_result("mae_lm", 2.5e-4, 1, 5.0)
    assert chosen_rate("mae_lm", low) == (None, 1.25e-4)
    low[1.25e-4] = fake_result("mae_lm", 1.25e-4, 1, 4.0)
    assert chosen_rate("mae_lm", low, limits=(1e-4, 2e-2)) == (1.25e-4, None)  # 6.25e-5 is past the limit
    high = {lr: fake_result("stock", lr, 1, 8.0 - lr * 100) for lr in grid}
    assert chosen_rate("stock", high) == (None, 1e-2)


def test_the_plan_follows_the_result_files(tmp_path):
    """The grid on seed 1 without probes until it is complete; then seed 1's
    probes and the other seeds at the chosen rate; finished jobs drop out."""
    settings = StudySettings(data=str(tmp_path), out=str(tmp_path / "out"), probe_tokens=100)

    def write(result):
        folder = arm_dir(settings, result["arm"], result["seed"], result["lr"])
        folder.mkdir(parents=True)
        (folder / "result.json").write_text(json.dumps(result))

    for lr, bits in {5e-4: 7.0, 1e-3: 6.5, 2e-3: 6.8, 5e-3: 7.5}.items():
        write(fake_result("random", lr, 1, bits))
    write(fake_result("cosine", 1e-3, 1, 6.0))
    write(fake_result("random", 1e-3, 3, 6.4, probed=True))
    plan = plan_jobs(settings, ["random", "cosine"], [1, 2, 3], parity=False, rates=(5e-4, 1e-3, 2e-3, 5e-3))
    assert plan == [Job("random", 1, 1e-3, True), Job("random", 2, 1e-3, True),
                    Job("cosine", 1, 5e-4, False), Job("cosine", 1, 2e-3, False), Job("cosine", 1, 5e-3, False)]  # fmt: skip
    tries = [Job("mae_lm_decoder4_pre_ln", 2, 2e-3, False), Job("random", 3, 1e-3, False)]  # the second is done
    assert plan_jobs(settings, [], [1], parity=False, tries=tries) == tries[:1]
    parity = plan_jobs(settings, [], [1], parity=True)
    shared = [Job("stock", 1, 3e-3, False), Job("random_never_bos_eos", 1, 3e-3, False)]
    assert parity == [Job("random", s, 3e-3, False) for s in (1, 2, 3)] + shared


def test_single_tries_are_the_jobs_outside_the_plan():
    def job(loss):
        scores = {"at_mask": {"loss_bits": loss}, "whole_words": {"loss_bits": loss + 1}, "unigram_at_mask_bits": 8.4}
        return {"final_scores": scores, "test_scores": scores, "collapsed": False}

    grid = {
        "mae_lm": {0.001: {1: job(6.8), 2: job(6.6)}, 0.002: {1: job(6.5), 2: job(8.4), 3: job(7.0)}},
        "mae_lm_pre_ln": {0.002: {2: job(6.3)}},
    }
    rows = [line for line in tries_markdown(grid, ["mae_lm"], {"mae_lm": 0.002}) if line.startswith("| mae_lm")]
    # the grid's seed 1 and the chosen rate's seeds are the plan; seed 2 at 1e-3 and the other arm are tries
    assert [row.split(" | ")[:3] for row in rows] == [["| mae_lm", "0.001", "2"], ["| mae_lm_pre_ln", "0.002", "2"]]
