"""Fully-explored masking as a dataset, for users who write their own tasks."""

import torch
from fairseq.data import BaseWrapperDataset, data_utils

from ..masking import CorruptionRule, FullyExploredOptions, FullyExploredUnits, MaskDraws
from .vocabulary import build_masker

STOCK_RULE = CorruptionRule()  # 80/10/10


class FullyExploredMaskingDataset(BaseWrapperDataset):
    """Wraps any dataset of 1-D token tensors (``<s>``-prefixed blocks, say);
    its collater emits K masked copies of every item, in stock ``masked_lm``
    batch format (``net_input.src_tokens``, ``net_input.src_lengths``,
    ``target``, ``id``, ``nsentences``, ``ntokens``), ready for the stock
    ``masked_lm`` criterion.

    Masks are made on the CPU in the collater with the same Masker and the same
    per-sequence draws as the ``masked_lm_plus`` task path: item ``i`` in epoch
    ``e`` is masked exactly as the task masks sample id ``i`` at update ``e``.
    Batch-size flags count unique items; a batch holds K copies of each.

    Args:
        dataset: items are 1-D LongTensors.
        dictionary: the fairseq Dictionary (``<mask>`` already added).
        mask_idx: id of ``<mask>``.
        options: K, partition and mask size.
        seed: masks depend on (seed, epoch, item index).
        rule: the 80/10/10 shares.
        whole_words: partition whole words (sentencepiece ``▁`` pieces).
        frequency_weighted: random replacements by dict.txt frequency.
        never_mask_bos_eos: never select ``<s>`` and ``</s>`` (the task's ``--never-mask-bos-eos``).
    """

    def __init__(
        self,
        dataset,
        dictionary,
        mask_idx: int,
        options: FullyExploredOptions,
        seed: int = 1,
        rule: CorruptionRule = STOCK_RULE,
        whole_words: bool = False,
        frequency_weighted: bool = False,
        never_mask_bos_eos: bool = False,
    ):
        super().__init__(dataset)
        self.options = options
        self.seed = seed
        self.pad_idx = dictionary.pad()
        masker = build_masker(
            dictionary, mask_idx, rule, whole_words, frequency_weighted, never_mask_bos_eos=never_mask_bos_eos
        )
        self.strategy = FullyExploredUnits(masker, options)
        self.epoch = 1

    @property
    def can_reuse_epoch_itr_across_epochs(self):
        return True  # only the masks change with the epoch, not the sizes

    def set_epoch(self, epoch, **unused):
        super().set_epoch(epoch)
        self.epoch = epoch

    def __getitem__(self, index):
        return {"id": index, "source": self.dataset[index]}

    def collater(self, samples):
        if not samples:
            return {}
        ids = [s["id"] for s in samples]
        tokens = data_utils.collate_tokens([s["source"] for s in samples], self.pad_idx)
        draws = MaskDraws.for_sequences("train", self.seed, self.epoch, ids, tokens.size(1), tokens.device)
        masked = self.strategy(tokens, draws, self.epoch)
        K = masked.copies
        lengths = torch.tensor([len(s["source"]) for s in samples])
        return {
            "id": torch.tensor(ids).repeat_interleave(K),
            "net_input": {"src_tokens": masked.src_tokens, "src_lengths": lengths.repeat_interleave(K)},
            "target": masked.target,
            "nsentences": len(samples) * K,
            "ntokens": int(lengths.sum()) * K,
        }
