"""Session fixtures: small binarised Brown corpora, prepared once per test run
and shared by the pytest-xdist workers."""

import pytest

from harness import BROWN_ZIP, TOKENS_PER_SAMPLE, built_once

BROWN_SLICE_DOCUMENTS = 60
BROWN_SLICE_VOCAB = 1000


def prepared_brown_slice(tmp_path_factory, name: str, pos: bool):
    """A fairseq data dir from the first 60 Brown documents (sentencepiece,
    1000 pieces; about 270k tokens), with the POS side input when ``pos``:
    prepared once per test run, by whichever worker asks first, and read
    (never written) by every test."""
    from maskplug_lab.corpus.prepare import PrepareOptions, prepare_corpus

    def prepare(path):
        options = PrepareOptions(input=str(BROWN_ZIP), out=str(path / "data"), vocab_size=BROWN_SLICE_VOCAB,
                                 max_documents=BROWN_SLICE_DOCUMENTS, pos=pos)  # fmt: skip
        prepare_corpus(options)

    return built_once(tmp_path_factory, name, prepare) / "data"


@pytest.fixture(scope="session")
def brown_data(tmp_path_factory):
    return prepared_brown_slice(tmp_path_factory, "brown", pos=False)


@pytest.fixture(scope="session")
def brown_pos_data(tmp_path_factory):
    return prepared_brown_slice(tmp_path_factory, "brown_pos", pos=True)


@pytest.fixture(scope="session")
def brown_task(brown_data):
    """A masked_lm_plus task on the Brown slice with train and valid loaded."""
    from fairseq_maskplug.tasks.masked_lm_plus import MaskedLMPlusConfig, MaskedLMPlusTask

    task = MaskedLMPlusTask.setup_task(MaskedLMPlusConfig(data=str(brown_data), tokens_per_sample=TOKENS_PER_SAMPLE, seed=1))
    task.load_dataset("train")
    task.load_dataset("valid")
    return task
