"""Export to Hugging Face transformers: a tiny RoBERTa and a tiny MAE-LM
trained with the plugin become directories that AutoModelForMaskedLM and
AutoTokenizer load offline, checked (logits ≤ 1e-4 from fairseq's, fairseq's
ids on every test-split line), usable by pipeline("fill-mask") and by a few
steps of AutoModelForSequenceClassification; the README's example runs."""

import subprocess
import sys

import pytest
import torch

from fairseq_maskplug.errors import ExportError
from fairseq_maskplug.models.export_hf import LOGIT_TOLERANCE, export_hf, hide_broken_torchaudio
from harness import CHILD_ENV, METHOD_FLAGS, built_once, documented_block, run_script, train_args, train_in_process

hide_broken_torchaudio()
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="session")
def trained(brown_data, tmp_path_factory):
    """{method: checkpoint} of tiny models trained 20 updates with the plugin (once per run)."""
    methods = ("random", "mae_lm", "mapnet")

    def train(root):
        for method in methods:
            train_in_process(train_args(brown_data, root / method, updates=20, extra=METHOD_FLAGS[method]))

    root = built_once(tmp_path_factory, "hf", train)
    return {method: root / method / "checkpoint_last.pt" for method in methods}


def held_out_lines(data):
    return [line for line in (data / "raw" / "test.txt").read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("method", ["random", "mae_lm", "mapnet"])
def test_export_loads_in_transformers_and_fine_tunes(trained, brown_data, tmp_path, method):
    out = tmp_path / "hf"
    result = export_hf(str(trained[method]), str(out))
    print(f"{method}: largest logit difference {result.max_logit_difference:.3g}")
    assert result.max_logit_difference <= LOGIT_TOLERANCE
    assert result.lines_checked == len(held_out_lines(brown_data))
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]

    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoTokenizer, pipeline

    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForMaskedLM.from_pretrained(out)
    predictions = pipeline("fill-mask", model=model, tokenizer=tokenizer)("The jury said the <mask> was over.")
    assert len(predictions) == 5 and all(0 <= p["score"] <= 1 for p in predictions)
    assert tokenizer.mask_token_id == len(tokenizer) - 1 and tokenizer.pad_token_id == 1

    classifier = AutoModelForSequenceClassification.from_pretrained(out, num_labels=2)
    texts = held_out_lines(brown_data)[:16]
    labels = torch.tensor([int(len(t.split()) > 15) for t in texts])
    batch = tokenizer(texts, padding=True, truncation=True, max_length=60, return_tensors="pt")
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        loss = classifier(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]


def test_export_refuses_and_writes_nothing_when_the_tokenizer_cannot_match_fairseq(trained, brown_data, tmp_path):
    """dict.txt without the piece '▁the' (its line given to a padding symbol,
    so the model's size is unchanged): fairseq reads that piece as <unk>, no
    tokenizer can, and the export says so and writes nothing."""
    data = tmp_path / "data"
    subprocess.run(["cp", "-r", str(brown_data), str(data)], check=True)
    lines = (data / "dict.txt").read_text().splitlines()
    lines = ["madeupword9999 0" if line.split()[0] == "\u2581the" else line for line in lines]
    (data / "dict.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(
        ExportError, match=r"the tokenizer disagrees with fairseq on test line .*absent from dict.txt to <unk>"
    ):
        export_hf(str(trained["random"]), str(tmp_path / "hf"), data=str(data))
    assert not (tmp_path / "hf").exists()


def test_readme_hugging_face_example_runs(trained, tmp_path, monkeypatch):
    """The README's export command (in this process, from the folder the
    example reads) and its transformers example, as written."""
    monkeypatch.chdir(tmp_path)
    export = run_script("export_hf.py", [trained["random"], "exported_hf"])
    assert export.returncode == 0, export.stderr[-3000:]
    assert "transformers' logits differ from fairseq's by at most" in export.stdout
    # as written: setup_env.sh removed the torchaudio that does not load beside torch 2.13
    code = documented_block("AutoModelForSequenceClassification", "python")
    run = subprocess.run([sys.executable, "-c", code], env=CHILD_ENV, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "step 2: loss" in run.stdout and len(run.stdout.splitlines()) == 6
