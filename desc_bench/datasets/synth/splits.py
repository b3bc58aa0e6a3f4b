"""HPatches-style splits of generated sequences, in the format of the official ``splits.json``."""

from __future__ import annotations

import math

import numpy as np


def make_splits(sequences: tuple[str, ...], seed: int, stream: int = 1) -> dict:
    """Splits a, b, c, illum, view, full of ``sequences`` (``i_*`` and ``v_*`` names).

    ``illum``/``view``/``full`` test on the ``i_``/``v_``/all sequences; ``a``, ``b``, ``c`` each
    test on about a third of the ``i_`` and of the ``v_`` sequences (consecutive windows of a seeded
    permutation, so the three are disjoint where the counts allow) and train on the rest. As in the
    official file, the order of each ``test`` list is shuffled (it matters for task generation).
    The random stream is ``SeedSequence([seed, stream])``.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, stream]))
    illum = [s for s in sequences if s.startswith("i_")]
    view = [s for s in sequences if s.startswith("v_")]
    order = {name: list(rng.permutation(group)) for name, group in (("i", illum), ("v", view))}
    out: dict = {}
    for index, key in enumerate("abc"):
        test = []
        for group in ("i", "v"):
            names = order[group]
            size = max(1, math.ceil(len(names) / 3)) if len(names) > 1 else 1
            test += [names[(index * size + j) % len(names)] for j in range(size)]
        test = [str(s) for s in rng.permutation(test)]
        train = [str(s) for s in rng.permutation([s for s in sequences if s not in test])]
        out[key] = {"name": key, "test": test, "train": train}
    out["illum"] = {"name": "illum", "test": [str(s) for s in rng.permutation(illum)]}
    out["view"] = {"name": "view", "test": [str(s) for s in rng.permutation(view)]}
    out["full"] = {"name": "full", "test": [str(s) for s in rng.permutation(list(sequences))]}
    return out
