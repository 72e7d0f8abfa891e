"""User-facing errors: each message is one line naming the problem and the fix."""
from __future__ import annotations


class BmrlError(Exception):
    """Base class; the CLI prints `error: <message>` and exits 1."""


class UnknownFamilyError(BmrlError):
    pass


class UnknownSuiteError(BmrlError):
    pass


class CardError(BmrlError):
    pass


class DatasetIdError(BmrlError):
    pass


class DatasetMissingError(BmrlError):
    pass


class DatasetCorruptError(BmrlError):
    pass


class ChecksumMismatchError(DatasetCorruptError):
    pass


class UnknownAlgorithmError(BmrlError):
    pass


class UnknownProtocolError(BmrlError):
    pass


class CheckpointError(BmrlError):
    pass


class SubmissionError(BmrlError):
    pass


class ConfigError(BmrlError):
    """A config field out of its type or range, raised when the config is built (`--set`, a checkpoint, code)."""


class AlgorithmContractError(BmrlError):
    """A registered algorithm class lacks what the registry requires (a name, a `default` config, ...)."""
