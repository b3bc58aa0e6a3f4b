"""Photometric changes: functions of a random generator and an image, returning a new image.

- :func:`illumination_change`: the ``i_`` targets of ``hpatches-synth`` (gray, float32): gamma,
  gain, offset, a linear illumination gradient, a light spot and sensor noise.
- :func:`exposure_change`: the ``i_`` targets of ``hpatches-seq-synth`` (RGB, uint8): gamma,
  per-channel gain, offset and slight noise, growing with a step number.
"""

from __future__ import annotations

import math

import numpy as np


def illumination_change(rng: np.random.Generator, image: np.ndarray, strength: float) -> np.ndarray:
    """Gamma, gain, offset, a linear illumination gradient, a light spot and sensor noise.

    ``image`` float32 0..255 ``(H, W)``; returns float32 0..255. ``strength`` 1 for a full
    illumination change, less for the mild change that comes with a viewpoint change.
    """
    height, width = image.shape
    gamma = math.exp(rng.uniform(-1, 1) * 0.5 * strength)
    gain = math.exp(rng.uniform(-1, 1) * 0.35 * strength)
    offset = rng.uniform(-1, 1) * 0.08 * strength
    direction = rng.uniform(0, 2 * math.pi)
    slope = rng.uniform(-1, 1) * 0.6 * strength
    spot_xy = rng.uniform(0, 1, size=2) * (width, height)
    spot_sigma = rng.uniform(0.15, 0.4) * max(height, width)
    spot_gain = rng.uniform(0, 0.6) * strength
    noise_sigma = rng.uniform(0.5, 3.0) * strength
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    diag = math.hypot(width, height)
    along = ((xs - width / 2) * math.cos(direction) + (ys - height / 2) * math.sin(direction)) / diag
    spot = np.exp(-((xs - spot_xy[0]) ** 2 + (ys - spot_xy[1]) ** 2) / (2 * spot_sigma**2))
    field = np.clip(1.0 + slope * along + spot_gain * spot, 0.2, None)
    base = np.power(np.clip(image / 255.0, 0, 1), gamma)
    out = (gain * field * base + offset) * 255.0
    out = out + rng.standard_normal(out.shape) * noise_sigma
    return np.clip(out, 0, 255).astype(np.float32)


def exposure_change(rng: np.random.Generator, image: np.ndarray, step: int) -> np.ndarray:
    """Illumination change of strength ``step`` (0 = none): gamma, per-channel gain, offset, noise.

    ``image`` uint8 ``(H, W, 3)``; returns uint8 of the same shape.
    """
    x = image.astype(np.float64) / 255.0
    gamma = 2.0 ** (rng.uniform(-1, 1) * 0.35 * step)
    gain = 1.0 + rng.uniform(-0.12, 0.12, size=3) * step
    offset = rng.uniform(-0.04, 0.04) * step
    x = np.clip(x, 0, 1) ** gamma * gain + offset
    x = x + rng.normal(0, 0.004 * step, size=x.shape)
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)
