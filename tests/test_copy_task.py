"""The pair-copy diagnostic (scripts/copy_task.py): its batches make every
masked word recoverable from its partner, and the script's quick form runs
both kinds of model and refuses malformed model specs."""

import json
import math

import torch

from harness import run_script
from maskplug_lab.diagnostics.copy_task import CopyTaskSettings, copy_dictionary, pair_batch


def test_every_masked_word_has_an_unmasked_equal_partner():
    settings = CopyTaskSettings(words=50, pairs=16, batch_size=64, mask_prob=0.3)
    dictionary = copy_dictionary(settings.words)
    tokens, masked = pair_batch(settings, dictionary, torch.Generator().manual_seed(0))
    assert tokens.shape == masked.shape == (64, 32)
    pairs, pair_masks = tokens.view(64, 16, 2), masked.view(64, 16, 2)
    assert torch.equal(pairs[..., 0], pairs[..., 1])
    assert not (pair_masks[..., 0] & pair_masks[..., 1]).any()
    assert tokens.min() >= dictionary.nspecial and tokens.max() < dictionary.nspecial + settings.words
    # the first of a pair at the nominal rate, the second at p(1 - p)
    share = pair_masks.float().mean(dim=(0, 1))
    assert abs(share[0] - 0.3) < 0.03 and abs(share[1] - 0.21) < 0.03


def test_quick_run_reports_each_model(tmp_path):
    out = tmp_path / "copy.json"
    result = run_script("copy_task.py", ["--quick", "--words", "32", "--models", "roberta:1:0,mae_lm:2:1", "--json", out])
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(out.read_text())["results"]
    assert [r["model"] for r in found] == ["roberta, 1-layer encoder", "mae_lm (decoder 1), 2-layer encoder"]
    for r in found:
        assert r["steps"][-1] == 20 and r["chance_bits"] == math.log2(32)
        assert all(math.isfinite(b) for b in r["loss_bits"]) and 0 <= r["accuracy"] <= 1


def test_malformed_model_spec_is_refused_by_name():
    result = run_script("copy_task.py", ["--quick", "--models", "bert:2"])
    assert result.returncode != 0
    assert "--models: 'bert:2' is not KIND:ENCODER_LAYERS:DECODER_LAYERS" in result.stderr
