"""Downstream probes of a pre-trained encoder, on frozen features:

- a linear POS-tagging probe per encoder layer (the embeddings and every
  layer's output), trained on train-split tokens and scored on the test
  split, with the gold universal tags of the POS side input; next to two
  baselines (the majority tag; each piece's most frequent tag in train);
- masked-token accuracy (top-1) on the fixed standard mask.

The encoder reads unmasked text (the condition a user fine-tunes in); an
MAE-LM model is probed through its encoder alone (``features_only``), which
is what ``export_roberta`` exports.
"""

import collections
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import torch
from sklearn.linear_model import LogisticRegression


@dataclass
class PosProbe:
    layer_accuracy: List[float]  # test accuracy per layer, 0 = embeddings
    majority: float  # the most frequent train tag for every token
    piece_majority: float  # each piece's most frequent train tag (majority tag for unseen pieces)
    train_tokens: int
    test_tokens: int
    tags: List[str] = field(default_factory=list)


def tagged_tokens(task, split: str, limit: int, batch_size: int = 64):
    """(token batches, tag classes) of ``split`` up to ``limit`` tagged tokens:
    lists of (B, L) token and class tensors (class -1: untagged)."""
    itr = task.get_batch_iterator(task.dataset(split), max_sentences=batch_size, max_positions=task.max_positions(),
                                  seed=1).next_epoch_itr(shuffle=False)  # fmt: skip
    batches, seen = [], 0
    for sample in itr:
        tokens, classes = sample["net_input"]["src_tokens"], task.pos_weighting.classes(sample["pos"])
        batches.append((tokens, classes))
        seen += int((classes >= 0).sum())
        if seen >= limit:
            break
    return batches


@torch.no_grad()
def layer_features(model, batches) -> Tuple[List[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Per layer the (N, C) features of the N tagged tokens, their classes
    (N,) and their piece ids (N,)."""
    model.eval()
    per_layer: Dict[int, List[torch.Tensor]] = collections.defaultdict(list)
    classes, pieces = [], []
    for tokens, tags in batches:
        inner = model(tokens, features_only=True, return_all_hiddens=True)[1]["inner_states"]
        keep = tags >= 0
        for layer, states in enumerate(inner):
            per_layer[layer].append(states.transpose(0, 1)[keep].float())
        classes.append(tags[keep])
        pieces.append(tokens[keep])
    return [torch.cat(per_layer[k]) for k in sorted(per_layer)], torch.cat(classes), torch.cat(pieces)


def pos_probe(task, model, train_tokens: int = 20000, test_tokens: int = 20000) -> PosProbe:
    """The linear probe of every layer (multinomial logistic regression on
    standardised features) and the two baselines; ``task`` has the POS side
    input and its train and test splits loaded."""
    train_features, train_classes, train_pieces = layer_features(model, tagged_tokens(task, "train", train_tokens))
    test_features, test_classes, test_pieces = layer_features(model, tagged_tokens(task, "test", test_tokens))
    accuracy = []
    for train_x, test_x in zip(train_features, test_features):
        mean, std = train_x.mean(0), train_x.std(0).clamp(min=1e-6)
        probe = LogisticRegression(max_iter=300)
        probe.fit(((train_x - mean) / std).numpy(), train_classes.numpy())
        accuracy.append(float(probe.score(((test_x - mean) / std).numpy(), test_classes.numpy())))
    majority_tag = int(torch.bincount(train_classes).argmax())
    by_piece: Dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    for piece, tag in zip(train_pieces.tolist(), train_classes.tolist()):
        by_piece[piece][tag] += 1
    guess = torch.tensor([by_piece[p].most_common(1)[0][0] if p in by_piece else majority_tag for p in test_pieces.tolist()])
    return PosProbe(
        accuracy, float((test_classes == majority_tag).double().mean()), float((guess == test_classes).double().mean()),
        len(train_classes), len(test_classes), list(task.pos_weighting.tags),
    )  # fmt: skip


def random_init_probe(checkpoint: str, data: str, tokens: int = 20000, seed: int = 1) -> PosProbe:
    """The POS probe on an encoder of ``checkpoint``'s architecture with
    freshly initialised weights (seed ``seed``): what no pre-training gives."""
    from fairseq import checkpoint_utils

    from fairseq_maskplug.scoring.validation import load_for_masking

    task, trained = load_for_masking(checkpoint, data, content_weighting="pos")
    torch.manual_seed(seed)
    model = task.build_model(checkpoint_utils.load_checkpoint_to_cpu(checkpoint)["cfg"].model)
    del trained
    for split in ("train", "test"):
        task.load_dataset(split)
    return pos_probe(task, model.eval(), tokens, tokens)
