"""The plugin's exception types. Each is a ``ValueError``: the input (an
option, a file, a checkpoint) has a value the plugin cannot work with, and
the message names it and what would be valid."""


class MaskplugError(ValueError):
    """Base of every error the plugin raises about its input."""


class MaskingOptionError(MaskplugError):
    """A task or criterion option has a value masking cannot train with."""


class ResumeMismatchError(MaskingOptionError):
    """The checkpoint being resumed was trained with other masking options."""


class ModelOptionError(MaskplugError):
    """A model option (MAE-LM's decoder, say) has a value the model cannot be built with."""


class DataFileError(MaskplugError):
    """A file of the data directory cannot be trained on."""


class PosInputError(DataFileError):
    """The POS side input is missing or does not line up with the tokens."""


class CorpusError(MaskplugError):
    """A raw corpus cannot be read or holds no text."""


class ExportError(MaskplugError):
    """A checkpoint cannot be exported faithfully."""
