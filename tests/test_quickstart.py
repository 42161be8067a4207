"""The quickstart's summary (experiments/quickstart.py) on a checkpoint of the
study's blocks: the masked-position table with both references, and fill-mask
guesses in the window of pieces the model's positions hold; the corpus it
chooses."""

import re
import subprocess
import sys

import pytest

from harness import BROWN_ZIP, CHILD_ENV, train_args, train_in_process
from maskplug_lab.experiments.configurations import STUDY
from maskplug_lab.experiments.quickstart import summary


def test_summary_shows_the_masked_position_loss_and_windowed_guesses(brown_data, tmp_path):
    blocks = ["--tokens-per-sample", str(STUDY.tokens_per_sample), "--max-positions", str(STUDY.tokens_per_sample)]
    train_in_process(train_args(brown_data, tmp_path / "ckpt", updates=10, extra=blocks))
    text = summary(tmp_path / "ckpt", tmp_path / "train.log", brown_data, sentences=3)
    assert "| input is `<mask>` |" in text and "reference at `<mask>`: train unigram" in text
    assert "the model: loss at <mask>" in text and re.search(r"\d\.\d{3} (below|above) the train unigram", text)
    guesses = [line for line in text.splitlines() if line.startswith("    (was ")]
    shown = [line.strip() for line in text.splitlines() if "<mask>" in line and line.startswith("  ") and "|" not in line]
    assert len(guesses) == 3 and len(shown) == 3
    for line in guesses:
        assert line.count(", ") == 4  # five guesses with their probabilities
    for line in shown:  # the window fits the model: at most tokens_per_sample - 1 pieces after <s>
        words = line.replace("…", "").split()
        assert "<mask>" in words and len(words) <= STUDY.tokens_per_sample - 1


def test_the_corpus_is_the_packaged_brown_unless_another_is_named(tmp_path, capsys):
    """No --corpus: the Brown corpus the package carries (the tests' own
    corpus too, so no test skips for missing data); `stdlib` writes the
    standard library's docstrings; an unknown path names the valid choices."""
    from fairseq_maskplug.errors import CorpusError
    from maskplug_lab.corpus.quickstart import choose_corpus
    from maskplug_lab.corpus.readers import is_brown

    chosen = choose_corpus(tmp_path)
    assert chosen == str(BROWN_ZIP) and is_brown(chosen) and (BROWN_ZIP.parent / "en-brown.map").exists()
    assert "the Brown corpus this repository carries" in capsys.readouterr().err
    text = choose_corpus(tmp_path, "stdlib")
    assert text == str(tmp_path / "stdlib_docstrings.txt") and len((tmp_path / "stdlib_docstrings.txt").read_text()) > 10**5
    with pytest.raises(CorpusError, match=r"--corpus nowhere/brown.zip: no such file or folder; valid: a path, `nltk`"):
        choose_corpus(tmp_path, "nowhere/brown.zip")


CONFIG_FROM_ARGS = """
import warnings
{plugin}
from fairseq import options
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
args = options.parse_args_and_arch(options.get_training_parser(), ["data", "--task", "masked_lm", "--arch", "roberta"])
convert_namespace_to_omegaconf(args)
warnings.warn("a warning of the user's own", UserWarning)
"""


@pytest.mark.parametrize("plugin", [True, False])
def test_the_platforms_deprecation_notices_are_filtered_and_nothing_else(plugin):
    """fairseq's config code under the pinned hydra prints hydra's
    deprecation warnings on every run (``-W always``: each is shown); once
    the plugin is loaded, only the user's own warning remains."""
    code = CONFIG_FROM_ARGS.format(plugin="import fairseq_maskplug" if plugin else "")
    run = subprocess.run([sys.executable, "-W", "always", "-c", code], env=CHILD_ENV, capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "a warning of the user's own" in run.stderr
    hydra_notices = re.findall(r"version_base|no longer experimental|strict flag|ConfigStore schema", run.stderr)
    assert (hydra_notices == []) if plugin else len(hydra_notices) >= 4, run.stderr
