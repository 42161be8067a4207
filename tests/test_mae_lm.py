"""MAE-LM: the encoder never sees <mask>, positions and padding are right, it is
a RoBERTa encoder, it trains under fp16 (resume and data-parallel:
test_interrupted_training, test_data_parallel), exports to stock fairseq and
fine-tunes there."""

import json
import logging
import subprocess
import sys
from argparse import Namespace

import pytest
import torch
from test_task_masking import batches

from fairseq_maskplug.methods import METHODS
from fairseq_maskplug.modules.mae_layout import gather_kept, kept_layout, scatter_kept
from fairseq_maskplug.tasks.masked_lm_plus import MaskedLMPlusConfig, MaskedLMPlusTask
from harness import CHILD_ENV, REPO_ROOT, logged_values, run_script, train_args, train_in_process
from maskplug_lab.experiments.configurations import TINY, method_flags

TINY_MAE = method_flags("mae_lm")


def mae_args(data, save_dir, **kwargs):
    extra = list(kwargs.pop("extra", ()))
    args = train_args(data, save_dir, **kwargs, extra=TINY_MAE + extra)
    return args


def build_models(task, **options):
    """A tiny mae_lm and a stock roberta with the same encoder weights."""
    from fairseq.models.roberta import RobertaModel

    from fairseq_maskplug.models.mae_lm import MaeLMModel

    size = TINY.encoder
    sizes = dict(
        encoder_layers=size.layers,
        encoder_embed_dim=size.dim,
        encoder_ffn_embed_dim=size.ffn,
        encoder_attention_heads=size.heads,
        max_positions=TINY.tokens_per_sample,
        decoder_layers=size.decoder_layers,
        dropout=0.0,
        attention_dropout=0.0,
        **options,
    )
    torch.manual_seed(0)
    mae = MaeLMModel.build_model(Namespace(**sizes), task)
    roberta = RobertaModel.build_model(Namespace(**sizes), task)
    roberta.load_state_dict({k: v for k, v in mae.state_dict().items() if k in roberta.state_dict()}, strict=True)
    return mae.eval(), roberta.eval()


@pytest.fixture(scope="module")
def models(brown_task):
    return build_models(brown_task)


def test_the_decoder_reads_the_encoders_position_table_when_asked(brown_task, models):
    """--decoder-positions encoder: the decoder's table is the encoder's
    (one parameter, trained by both); by default it has its own, and the
    default's initialisation is unchanged by the option's existence (the
    same parameters from the same seed)."""
    mae, _ = models
    shared, _ = build_models(brown_task, decoder_positions="encoder")
    encoder_table = shared.encoder.sentence_encoder.embed_positions.weight
    assert shared.encoder.decoder.embed_positions.weight is encoder_table
    assert mae.encoder.decoder.embed_positions.weight is not mae.encoder.sentence_encoder.embed_positions.weight
    same_seed, _ = build_models(brown_task)
    assert all(torch.equal(v, same_seed.state_dict()[k]) for k, v in mae.state_dict().items())
    sample, masked = masked_batch(brown_task)
    logits, _ = shared(masked["net_input"]["src_tokens"], masked_tokens=masked["target"].ne(1))
    logits.float().logsumexp(-1).sum().backward()
    assert encoder_table.grad is not None and encoder_table.grad.abs().sum() > 0


def masked_batch(task, update=0, batch_size=8):
    sample = next(batches(task, batch_size=batch_size))
    return sample, task.mask_sample(sample, task.training_masks(sample, update))


def test_gather_and_scatter_are_inverse_on_random_batches():
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        kept = torch.rand(6, 17, generator=generator) < 0.7
        kept[:, 0] = True
        values = torch.randn(6, 17, 5, generator=generator).half()
        layout = kept_layout(kept)
        gathered = gather_kept(values, layout, 0.0)
        assert gathered.dtype == torch.float16
        assert (layout.valid.sum(1) == kept.sum(1)).all()
        restored = scatter_kept(gathered, layout, torch.zeros_like(values))
        assert torch.equal(restored[kept], values[kept]) and (restored[~kept] == 0).all()
        assert torch.equal(gather_kept(restored, layout, 0.0), gathered)


def test_encoder_receives_no_mask_and_exactly_the_unmasked_tokens(brown_task, models):
    mae, _ = models
    sample, masked = masked_batch(brown_task)
    src = masked["net_input"]["src_tokens"]
    seen = []
    handle = mae.encoder.sentence_encoder.register_forward_hook(lambda m, args, kwargs_out: seen.append(args[0]))
    try:
        logits, _ = mae(src, masked_tokens=masked["target"].ne(1))
    finally:
        handle.remove()
    encoder_tokens = seen[0]
    pad = brown_task.dictionary.pad()
    assert not (encoder_tokens == brown_task.mask_idx).any()
    unmasked = (src.ne(brown_task.mask_idx) & src.ne(pad)).sum(1)
    assert torch.equal(encoder_tokens.ne(pad).sum(1), unmasked)
    assert (src == brown_task.mask_idx).any()
    assert logits.shape == (int(masked["target"].ne(pad).sum()), len(brown_task.dictionary))


def test_mae_lm_is_trained_with_the_reference_corruption(brown_data):
    """The reference removes every selected position from the encoder (its
    keep and random shares are 0): the method's flags and the mae_lm recipe
    say so, and under them the encoder loses exactly the predicted positions."""
    import yaml

    flags = list(METHODS["mae_lm"].flags)
    assert flags[flags.index("--leave-unmasked-prob") + 1] == "0" and flags[flags.index("--random-token-prob") + 1] == "0"
    recipe = yaml.safe_load((REPO_ROOT / "fairseq_maskplug" / "config" / "pretraining" / "mae_lm.yaml").read_text())
    assert recipe["task"]["leave_unmasked_prob"] == 0 and recipe["task"]["random_token_prob"] == 0
    task = MaskedLMPlusTask.setup_task(
        MaskedLMPlusConfig(data=str(brown_data), tokens_per_sample=TINY.tokens_per_sample, seed=1,
                           leave_unmasked_prob=0.0, random_token_prob=0.0)
    )  # fmt: skip
    task.load_dataset("train")
    sample = next(iter(batches(task, limit=1)))
    masked = task.training_masks(sample, 3)
    src = masked.src_tokens
    assert torch.equal(src.eq(task.mask_idx), masked.predicted)  # every predicted position is removed
    tokens = sample["net_input"]["src_tokens"]
    kept = tokens.ne(task.dictionary.pad()).sum(1) - masked.predicted.sum(1)
    assert torch.equal((src.ne(task.mask_idx) & src.ne(task.dictionary.pad())).sum(1), kept)


def encoder_rows(mae, src, mask_idx, pad):
    """Per row: the encoder's output vectors of its kept tokens."""
    layout = kept_layout(src.ne(mask_idx) & src.ne(pad))
    tokens = gather_kept(src, layout, pad)
    positions = torch.where(layout.valid, layout.index + pad + 1, torch.full_like(layout.index, pad))
    out = mae.encoder.sentence_encoder(tokens, positions=positions)["encoder_out"][0].transpose(0, 1)
    return [out[b][layout.valid[b]] for b in range(src.size(0))]


def test_a_rows_encoder_output_ignores_the_other_rows_masks(brown_task, models):
    """Padding correctness: re-masking rows 1.. (different kept counts, so a
    different padded width) leaves row 0's encoder outputs unchanged."""
    mae, _ = models
    sample, first = masked_batch(brown_task, update=0)
    _, second = masked_batch(brown_task, update=1)
    a = first["net_input"]["src_tokens"]
    b = torch.cat([a[:1], second["net_input"]["src_tokens"][1:]])
    with torch.no_grad():
        rows_a = encoder_rows(mae, a, brown_task.mask_idx, 1)
        rows_b = encoder_rows(mae, b, brown_task.mask_idx, 1)
    assert not torch.equal(a[1:], b[1:])
    assert (rows_a[0] - rows_b[0]).abs().max().item() < 1e-5


def test_without_masks_the_encoder_is_a_roberta_encoder(brown_task, models):
    mae, roberta = models
    sample = next(batches(brown_task, batch_size=8))
    clean = sample["net_input"]["src_tokens"]
    with torch.no_grad():
        expected = roberta(clean, features_only=True)[0]
        full = mae(clean, features_only=True)[0]
        rows = encoder_rows(mae, clean, brown_task.mask_idx, 1)
    assert (full - expected).abs().max().item() < 1e-5
    for b, row in enumerate(rows):
        assert (row - expected[b][clean[b].ne(1)]).abs().max().item() < 1e-5


def test_mae_lm_trains_under_memory_efficient_fp16(brown_data, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    train_in_process(mae_args(brown_data, tmp_path / "fp16", updates=10, extra=["--memory-efficient-fp16"]))
    losses = logged_values(caplog.text, "loss")
    assert losses and all(torch.isfinite(torch.tensor(losses)))


def sentence_prediction_data(data, out):
    """A two-class sentence task (long vs short lines) in fairseq's layout."""
    import sentencepiece as spm

    from maskplug_lab.corpus.prepare import binarize

    processor = spm.SentencePieceProcessor(model_file=str(data / "spm.model"))
    lines = [line for line in (data / "raw" / "train.txt").read_text().splitlines() if line.strip()][:240]
    pieces_dir, labels_dir = out / "pieces", out / "labels"
    pieces_dir.mkdir(parents=True)
    labels_dir.mkdir()
    for split, chunk in (("train", lines[:160]), ("valid", lines[160:200]), ("test", lines[200:])):
        pieces = [" ".join(processor.encode(line, out_type=str)) for line in chunk]
        (pieces_dir / split).write_text("\n".join(pieces) + "\n")
        (labels_dir / split).write_text("\n".join("long" if len(line.split()) > 18 else "short" for line in chunk) + "\n")
    binarize(str(pieces_dir), str(out / "input0"), workers=1, srcdict=str(data / "dict.txt"))
    binarize(str(labels_dir), str(out / "label"), workers=1)
    return out


def test_export_loads_in_stock_fairseq_and_fine_tunes(brown_data, tmp_path):
    save = tmp_path / "mae"
    train_in_process(mae_args(brown_data, save, updates=10))
    export = tmp_path / "export"
    result = run_script("export_roberta.py", [save / "checkpoint_last.pt", export])
    assert result.returncode == 0, result.stderr[-3000:]
    # one process of stock fairseq, without the plugin: the exported encoder's outputs (compared below with the
    # MAE-LM encoder's), then sentence_prediction fine-tuning from the exported checkpoint
    task_data = sentence_prediction_data(brown_data, tmp_path / "sp")
    finetune = [
        str(task_data), "--task", "sentence_prediction", "--num-classes", "2", "--criterion", "sentence_prediction",
        "--restore-file", str(export / "model.pt"), "--reset-optimizer", "--reset-dataloader", "--reset-meters",
        *TINY.encoder.flags(), "--arch", "roberta", "--max-positions", str(TINY.tokens_per_sample),
        "--init-token", "0", "--separator-token", "2", "--shorten-method", "truncate", "--optimizer", "adam",
        "--lr", "1e-4", "--max-update", "5", "--batch-size", "8", "--cpu", "--num-workers", "0", "--no-save",
        "--log-format", "simple", "--log-interval", "1",
    ]  # fmt: skip
    code = (
        "import argparse, sys, json, torch\n"
        "import os; assert 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD' not in os.environ  # safe loading on\n"
        "torch.serialization.add_safe_globals([argparse.Namespace])  # as docs/methods/mae_lm.md says\n"
        "from fairseq.models.roberta import RobertaModel\n"
        f"m = RobertaModel.from_pretrained({str(export)!r}, 'model.pt', bpe='sentencepiece').eval()\n"
        "tokens = m.encode('The jury said it did find that many of the laws are outmoded.')\n"
        "assert 'fairseq_maskplug' not in sys.modules\n"
        "features = m.extract_features(tokens)[0].tolist()\n"
        "print('ENCODED', json.dumps({'tokens': tokens.tolist(), 'features': features}), flush=True)\n"
        "from fairseq_cli.train import cli_main\n"
        "sys.argv = ['fairseq-train'] + sys.argv[1:]\n"
        "cli_main()\n"
    )
    stock_env = {k: v for k, v in CHILD_ENV.items() if k != "PYTHONPATH"}
    run = subprocess.run([sys.executable, "-c", code, *finetune], env=stock_env, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    stock = json.loads(next(line for line in run.stdout.splitlines() if line.startswith("ENCODED "))[len("ENCODED ") :])
    from fairseq_maskplug.scoring.validation import load_for_masking

    _, mae = load_for_masking(str(save / "checkpoint_last.pt"), str(brown_data))
    with torch.no_grad():
        ours = mae(torch.tensor([stock["tokens"]]), features_only=True)[0][0]
    assert (ours - torch.tensor(stock["features"])).abs().max().item() < 1e-5
    assert "Loaded checkpoint" in run.stdout + run.stderr
    assert logged_values(run.stdout + run.stderr, "num_updates")[-1] == 5


def test_effective_rank_script(brown_data, tmp_path):
    train_in_process(mae_args(brown_data, tmp_path / "mae", updates=10))
    train_in_process(train_args(brown_data, tmp_path / "roberta", updates=10))
    out = tmp_path / "rank.json"
    checkpoints = [tmp_path / "roberta" / "checkpoint_last.pt", tmp_path / "mae" / "checkpoint_last.pt"]
    args = ["--data", brown_data, "--checkpoint", checkpoints[0], "--checkpoint", checkpoints[1], "--json", out,
            "--max-tokens", "2000"]  # fmt: skip
    result = run_script("effective_rank.py", args)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    roberta, mae = report.values()
    assert roberta["model"] == "roberta" and mae["model"] == "mae_lm"
    assert len(roberta["layers"]) == len(mae["layers"]) == 3  # embeddings + 2 layers
    for layer in roberta["layers"]:
        assert 1 <= layer["with_mask_real"]["rank_90"] <= layer["with_mask_real"]["rank_99"] <= 64
        assert "mask_tokens" in layer and all(0 <= a <= 90 for a in layer["principal_angles_deg"])
    assert all("mask_tokens" not in layer for layer in mae["layers"])


def test_export_of_an_encoder_with_fewer_positions_than_the_check_batch(brown_data, tmp_path):
    """The study's 16-position MAE-LM exports (the agreement check's batch
    used to be 32 tokens long, past such an encoder's positions)."""
    from fairseq_maskplug.models.export import export_roberta

    blocks = ["--tokens-per-sample", "16", "--max-positions", "16"]
    train_in_process(mae_args(brown_data, tmp_path / "mae", updates=2) + blocks)
    path = export_roberta(str(tmp_path / "mae" / "checkpoint_last.pt"), str(tmp_path / "out"))
    assert torch.load(path, map_location="cpu")["cfg"]["model"].max_positions == 16  # safe loading, the plugin's allow-list


def test_export_refuses_a_roberta_checkpoint(brown_data, tmp_path):
    train_in_process(train_args(brown_data, tmp_path / "roberta", updates=2))
    result = run_script("export_roberta.py", [tmp_path / "roberta" / "checkpoint_last.pt", tmp_path / "out"])
    assert result.returncode != 0 and "is not an MAE-LM checkpoint (model 'roberta'" in result.stderr
    assert not (tmp_path / "out").exists()
