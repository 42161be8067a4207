"""Fail loudly, naming split and id, when binarised data holds ids the dictionary lacks."""

from fairseq.data import BaseWrapperDataset


class VocabCheckedDataset(BaseWrapperDataset):
    """Passes items through, raising ValueError on the first id ``>= num_symbols``.

    The check is per item (O(length), in the data loader), so a corrupt or
    mismatched ``.bin`` fails at the latest on the first batch that holds a
    bad id, instead of silently indexing past the embedding table.
    """

    def __init__(self, dataset, num_symbols: int, split: str, path: str):
        super().__init__(dataset)
        self.num_symbols = num_symbols
        self.split = split
        self.path = path

    def __getitem__(self, index):
        item = self.dataset[index]
        largest = int(item.max()) if len(item) else -1
        smallest = int(item.min()) if len(item) else 0
        if largest >= self.num_symbols or smallest < 0:
            bad = largest if largest >= self.num_symbols else smallest
            raise ValueError(
                f"split '{self.split}' ({self.path}) holds token id {bad} in item {index}, "
                f"outside the dictionary's ids 0..{self.num_symbols - 1}: the .bin does not "
                "belong to this dict.txt (re-binarise it with the same dictionary)"
            )
        return item
