"""User-facing exception types.

Every error says what was expected, what was found and what to do. Code never uses ``assert`` for
user errors; it raises one of these, and the CLI prints the message without a traceback.
"""

from __future__ import annotations


class DescBenchError(Exception):
    """Base class of every error the harness reports to a user."""


class UnknownNameError(DescBenchError, KeyError):
    """An unknown descriptor, dataset, option, protocol or split name."""

    def __init__(self, kind: str, name: str, valid: list[str] | tuple[str, ...]):
        self.kind, self.name, self.valid = kind, name, sorted(valid)
        super().__init__(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(self.valid) or '(none)'}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class DescriptorUnavailableError(DescBenchError):
    """A registered descriptor cannot run here (missing weights or library); the message says how to fix it."""


class DescriptorOutputError(DescBenchError):
    """A descriptor returned the wrong shape, dtype or non-finite values."""


class InputError(DescBenchError, ValueError):
    """Bad input given to a descriptor (wrong patch shape, dtype, keypoint array)."""


class DatasetError(DescBenchError):
    """A dataset is missing or malformed; the message names the file."""


class DownloadError(DescBenchError):
    """A download failed, did not verify, or an archive is unsafe to extract."""


class WeightsError(DescBenchError):
    """A weight file is missing, fails verification, or has the wrong keys or shapes."""


class RecordError(DescBenchError):
    """A result record does not follow the schema."""
