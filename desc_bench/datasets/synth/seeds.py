"""Stable random streams: the same name and seed give the same numbers on every platform and run."""

from __future__ import annotations

import hashlib
import zlib

import numpy as np


def name_seed(seed: int, name: str) -> np.random.SeedSequence:
    """An independent stream for ``name`` (a sequence name) under ``seed``: SHA-256 of the name."""
    digest = hashlib.sha256(name.encode()).digest()
    return np.random.SeedSequence([seed, int.from_bytes(digest[:8], "little")])


def crc_seed(*parts) -> int:
    """A 32-bit seed from the parts' text (CRC-32 of ``"a:b:c"``)."""
    return zlib.crc32(":".join(str(p) for p in parts).encode())
