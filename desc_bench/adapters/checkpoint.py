"""Safe loading of checkpoint files and the checks a state dict must pass before a network sees it.

:func:`load_state_dict` never executes code from the file (``torch.load(weights_only=True)``),
recognises the upstream layouts (module docstring of :mod:`desc_bench.adapters.weights`), and
checks the state against the keys and shapes the architecture expects, and that every tensor holds
finite floating-point values (a checkpoint of integers, or one with a NaN, is refused: it would
give plausible-looking numbers or none at all). Float16/bfloat16/float64 tensors are accepted and
converted to float32, the dtype every network here computes in.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import WeightsError

IGNORED_SUFFIXES = ("num_batches_tracked",)  # absent from old checkpoints, unused at inference


def _read(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(
            f"refused to load {path}: it contains objects other than tensors and plain containers, "
            f"which could run code when unpickled ({str(exc).splitlines()[0]}). Only state dicts "
            "and checkpoints made of tensors are accepted"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError) as exc:
        raise WeightsError(f"cannot read {path} as a PyTorch weight file: {exc}") from None


def _candidates(raw: Any) -> list[dict[str, Any]]:
    """The state dicts a file may hold, in the upstream formats (see :mod:`desc_bench.adapters.weights`)."""
    found = []
    if isinstance(raw, dict):
        found.append(raw)
        for key in ("state_dict", "model", "net", "params"):
            if isinstance(raw.get(key), dict):
                found.append(raw[key])
        if isinstance(raw.get("extractor"), dict) or isinstance(raw.get("embedder"), dict):
            merged = {}
            for key in ("extractor", "embedder"):
                if isinstance(raw.get(key), dict):
                    merged.update(raw[key])
            found.append(merged)
    out = []
    for state in found:
        out.append(state)
        if state and all(isinstance(k, str) and k.startswith("module.") for k in state):
            out.append({k[len("module.") :]: v for k, v in state.items()})
    return out


def load_state_dict(path: Path | str, expected: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Load a state dict safely and check it against ``expected`` keys and shapes.

    Never executes code from the file. Keys ending in ``num_batches_tracked`` are optional and
    dropped. Raises WeightsError saying which keys are missing or unexpected, which shapes differ
    from what was expected, and which tensors are not floating point or hold NaN or infinity.
    Returns float32 tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"no weight file at {path}")
    raw = _read(path)
    required = {k: tuple(v) for k, v in expected.items() if not k.endswith(IGNORED_SUFFIXES)}
    best, best_overlap = None, -1
    for state in _candidates(raw):
        overlap = len(required.keys() & state.keys())
        if overlap > best_overlap:
            best, best_overlap = state, overlap
    if best is None or best_overlap <= 0:
        top = sorted(map(str, raw.keys()))[:8] if isinstance(raw, dict) else type(raw).__name__
        raise WeightsError(
            f"{path} holds no state dict with the expected keys (e.g. {next(iter(required), '?')!r}); "
            f"found {top}. Is it a weight file of another descriptor?"
        )
    state = {k: v for k, v in best.items() if not str(k).endswith(IGNORED_SUFFIXES)}
    missing = sorted(required.keys() - state.keys())
    unexpected = sorted(map(str, state.keys() - required.keys()))
    problems = []
    if missing:
        problems.append(f"missing keys {_short(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_short(unexpected)}")
    for key in sorted(required.keys() & state.keys()):
        value = state[key]
        if not isinstance(value, torch.Tensor):
            problems.append(f"{key} is a {type(value).__name__}, expected a tensor of shape {required[key]}")
        elif tuple(value.shape) != required[key]:
            problems.append(f"{key} has shape {tuple(value.shape)}, expected {required[key]}")
        elif not value.is_floating_point():
            problems.append(f"{key} holds {str(value.dtype).removeprefix('torch.')} values, expected floating point")
        elif not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            problems.append(f"{key} has {bad} NaN or infinite values of {value.numel()}")
    if problems:
        raise WeightsError(f"{path} does not fit the architecture: " + "; ".join(problems))
    return {k: state[k].float() for k in required}


def _short(keys: list[str], limit: int = 6) -> str:
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def state_shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of ``module``'s state dict, as checkpoints must hold them: the one place where
    the optional batch-norm counters (``num_batches_tracked``) are left out."""
    return {k: tuple(v.shape) for k, v in module.state_dict().items() if not k.endswith(IGNORED_SUFFIXES)}


def random_state(expected: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded random weights with sane statistics (He-scaled kernels, unit BN variances)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in expected.items():
        if key.endswith(IGNORED_SUFFIXES):
            continue
        if key.endswith("running_var"):
            state[key] = torch.ones(shape)
        elif key.endswith(("running_mean", "bias")):
            state[key] = torch.zeros(shape)
        elif len(shape) == 1:  # affine batch-norm scale
            state[key] = torch.ones(shape)
        else:
            fan_in = max(1, int(torch.tensor(shape[1:]).prod()))
            state[key] = torch.randn(shape, generator=generator) * (2.0 / fan_in) ** 0.5
    return state
