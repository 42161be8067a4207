"""Session fixtures: small binarised Brown corpora, prepared once per test run."""

import pytest

from harness import BROWN_ZIP, TOKENS_PER_SAMPLE

BROWN_SLICE_DOCUMENTS = 60
BROWN_SLICE_VOCAB = 1000


def prepared_brown_slice(tmp_path_factory, name: str, pos: bool):
    """A fairseq data dir from the first 60 Brown documents (sentencepiece,
    1000 pieces; about 270k tokens), with the POS side input when ``pos``."""
    from fairseq_maskplug.corpus.prepare import PrepareOptions, prepare_corpus

    out = tmp_path_factory.mktemp(name) / "data"
    prepare_corpus(
        PrepareOptions(
            input=str(BROWN_ZIP), out=str(out), vocab_size=BROWN_SLICE_VOCAB, max_documents=BROWN_SLICE_DOCUMENTS, pos=pos
        )
    )
    return out


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
