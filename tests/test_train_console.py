"""The quickstart's console (maskplug_lab/experiments/train_console.py):
fairseq-train's own output goes to the log file, the console gets the
progress and, after each validation, the loss at <mask> against the
unigram; a failing run exits with its status and shows the end of its log."""

import re
import signal
import subprocess
import sys
import time

from harness import CHILD_ENV, train_args

CONSOLE = [sys.executable, "-m", "maskplug_lab.experiments.train_console"]
FAIRSEQ_TRAIN = [sys.executable, "-m", "fairseq_cli.train"]


def test_the_console_shows_progress_and_the_loss_at_mask_and_the_log_holds_the_rest(brown_data, tmp_path):
    log = tmp_path / "train.log"
    args = train_args(brown_data, tmp_path / "ckpt", updates=10, extra=["--log-format", "json", "--log-interval", "2",
                                                                       "--validate-interval-updates", "5"])  # fmt: skip
    run = subprocess.run([*CONSOLE, str(log), "10", "--", *FAIRSEQ_TRAIN, *args], env=CHILD_ENV, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    lines = re.findall(r"^update (\d+)/10: loss at <mask> (\d+\.\d+) bits, (\d+\.\d+) (below|above) the unigram "
                       r"\((\d+\.\d+)\)$", run.stdout, flags=re.M)  # fmt: skip
    assert [int(update) for update, *_ in lines] == [5, 10], run.stdout
    for _, loss, gap, side, unigram in lines:
        assert abs(float(unigram) - float(loss) - (float(gap) if side == "below" else -float(gap))) < 0.006
    text = log.read_text()
    assert "'_name': 'masked_lm_plus'" in text and '"valid_loss_at_mask"' in text  # fairseq's config dump, its records
    assert "'_name': 'masked_lm_plus'" not in run.stdout and len(run.stdout) < len(text) / 5


def test_a_failing_run_exits_with_its_status_and_shows_the_end_of_its_log(brown_data, tmp_path):
    log = tmp_path / "train.log"
    args = train_args(brown_data, tmp_path / "ckpt", updates=10, extra=["--mask-prob", "1.5"])
    run = subprocess.run([*CONSOLE, str(log), "10", "--", *FAIRSEQ_TRAIN, *args], env=CHILD_ENV, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]
    assert f"failed (exit status 1); the end of its log, {log}:" in run.stderr
    assert "--mask-prob must lie in (0, 1)" in run.stderr and "--mask-prob must lie in (0, 1)" in log.read_text()


def test_stopping_the_console_stops_the_run(brown_data, tmp_path):
    """SIGTERM to the console (a job scheduler's stop) ends fairseq-train too:
    no training left running unseen."""
    log, save = tmp_path / "train.log", tmp_path / "ckpt"
    args = train_args(brown_data, save, updates=100000, extra=["--log-format", "json", "--log-interval", "1"])
    console = subprocess.Popen([*CONSOLE, str(log), "100000", "--", *FAIRSEQ_TRAIN, *args], env=CHILD_ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and '"num_updates"' not in (log.read_text() if log.exists() else ""):
        time.sleep(0.5)
    assert '"num_updates"' in log.read_text(), "fairseq-train did not start training"
    console.send_signal(signal.SIGTERM)
    assert console.wait(timeout=30) == 128 + signal.SIGTERM
    left = subprocess.run(["pgrep", "-f", str(save)], capture_output=True, text=True)
    assert left.stdout.strip() == "", f"fairseq-train still running: {left.stdout}"
