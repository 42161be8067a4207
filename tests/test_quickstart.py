"""The quickstart's summary (experiments/quickstart.py) on a checkpoint of the
study's blocks: the masked-position table with both references, and fill-mask
guesses in the window of pieces the model's positions hold."""

from fairseq_maskplug.experiments.configurations import STUDY
from fairseq_maskplug.experiments.quickstart import summary
from harness import train_args, train_subprocess


def test_summary_shows_the_masked_position_loss_and_windowed_guesses(brown_data, tmp_path):
    blocks = ["--tokens-per-sample", str(STUDY.tokens_per_sample), "--max-positions", str(STUDY.tokens_per_sample)]
    train_subprocess(train_args(brown_data, tmp_path / "ckpt", updates=10, extra=blocks))
    text = summary(tmp_path / "ckpt", tmp_path / "train.log", brown_data, sentences=3)
    assert "| input is `<mask>` |" in text and "reference at `<mask>`: train unigram" in text
    assert "the model: loss at <mask>" in text and "below the train unigram" in text
    guesses = [line for line in text.splitlines() if line.startswith("    (was ")]
    shown = [line.strip() for line in text.splitlines() if "<mask>" in line and line.startswith("  ") and "|" not in line]
    assert len(guesses) == 3 and len(shown) == 3
    for line in guesses:
        assert line.count(", ") == 4  # five guesses with their probabilities
    for line in shown:  # the window fits the model: at most tokens_per_sample - 1 pieces after <s>
        words = line.replace("…", "").split()
        assert "<mask>" in words and len(words) <= STUDY.tokens_per_sample - 1
