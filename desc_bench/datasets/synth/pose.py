"""The embedded two-view dataset ``pose-synth``: known intrinsics and relative poses, no download.

Each of the 24 pairs is its own scene: a textured back wall and four textured planar facets
(scikit-image pictures, :mod:`.sources`) at depths 3.5..7 m, tilted up to 40 degrees, rendered by
ray casting into two 640x480 pinhole views (f = 520 px) with correct occlusion (the nearest facet
along each pixel's ray wins; bilinear texture lookup). Camera 0 is the world frame; camera 1 sits
``baseline`` metres away (0.15..1.2 m, growing with the pair index) and looks at the scene centre,
rolled by up to 8 degrees, so the pairs range from easy to hard and the essential matrix is well
conditioned (the scene spans several depths and orientations).

Layout under ``<data_dir>/pose-synth``: ``<pair>/0.png``, ``<pair>/1.png`` and ``pairs.json``
(per pair: ``K0``, ``K1``, ``R`` and ``t`` with ``X1 = R X0 + t``, world->camera-1 as camera 0 is the
world). Generated once, atomically; a ``VERSION`` file marks a complete set of this generator
version. The ground truth is checked by a test: points projected with the true poses satisfy
``x1^T E x0 = 0`` to 1e-6 (tests/datasets/test_pose_synth.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from ...errors import DatasetError
from ...io.atomic import remove_stale_staging, staged_folder
from ...io.progress import bar
from ..base import DatasetSource
from .seeds import crc_seed
from .sources import load_image, to_rgb

NAME = "pose-synth"
VERSION = "1"
SIZE = (640, 480)  # width, height
FOCAL = 520.0
PAIRS = 24
TEXTURES = ("astronaut", "coffee", "chelsea", "rocket", "camera", "brick", "gravel", "immunohistochemistry")
TEXTURE_SIZE = 384
SCENE_CENTRE = np.array([0.0, 0.0, 5.5])


def intrinsics() -> np.ndarray:
    w, h = SIZE
    return np.array([[FOCAL, 0, (w - 1) / 2], [0, FOCAL, (h - 1) / 2], [0, 0, 1]], np.float64)


@dataclass(frozen=True)
class Facet:
    """A textured rectangle: centre, in-plane unit axes u, v (normal u x v), half sizes in metres."""

    centre: np.ndarray
    u: np.ndarray
    v: np.ndarray
    half: tuple[float, float]
    texture: int  # index into the loaded textures

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.u, self.v)


@dataclass(frozen=True)
class PosePair:
    name: str
    images: tuple[Path, Path]
    K0: np.ndarray
    K1: np.ndarray
    R: np.ndarray  # X1 = R X0 + t
    t: np.ndarray

    def image(self, index: int) -> np.ndarray:
        from ..pairs import read_image

        return read_image(self.images[index])


@dataclass(frozen=True)
class PoseSet:
    """A two-view dataset with known intrinsics and relative poses (kind ``pose``)."""

    name: str
    pairs: tuple[PosePair, ...]
    version: str = ""
    kind: str = "pose"
    default_protocol: str = "relative-pose"
    expected_pairs: int | None = None  # pairs of the full dataset (None: this set is complete)

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def complete(self) -> bool:
        return self.expected_pairs is None or len(self.pairs) >= self.expected_pairs


def rotation(axis: np.ndarray, degrees: float) -> np.ndarray:
    axis = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    R, _ = cv2.Rodrigues(axis * np.deg2rad(degrees))
    return R


def look_at(centre: np.ndarray, target: np.ndarray, roll: float) -> np.ndarray:
    """World->camera rotation of a camera at ``centre`` looking at ``target`` (y down), rolled."""
    z = target - centre
    z = z / np.linalg.norm(z)
    x = np.cross(np.array([0.0, 1.0, 0.0]), z)
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    return rotation([0, 0, 1], roll) @ np.stack([x, y, z])


def make_scene(rng: np.random.Generator) -> list[Facet]:
    """A back wall and four tilted facets in front of it, all different textures."""
    order = rng.permutation(len(TEXTURES))
    facets = [Facet(np.array([0.0, 0.0, 9.0]), np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), (9.0, 7.0), int(order[0]))]
    for i, (x, y) in enumerate(((-1.1, -0.8), (1.1, -0.8), (-1.1, 0.8), (1.1, 0.8))):
        centre = np.array([x + rng.uniform(-0.3, 0.3), y + rng.uniform(-0.2, 0.2), rng.uniform(3.5, 7.0)])
        tilt = rotation(rng.normal(size=3), rng.uniform(10, 40))
        u, v = tilt @ np.array([1.0, 0, 0]), tilt @ np.array([0, 1.0, 0])
        facets.append(Facet(centre, u, v, (rng.uniform(0.7, 1.1), rng.uniform(0.6, 0.9)), int(order[1 + i])))
    return facets


def render(facets: list[Facet], textures, K: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """RGB uint8 ``(h, w, 3)``: per pixel the nearest facet hit by its ray, textured bilinearly."""
    w, h = SIZE
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    rays = np.stack([xs, ys, np.ones_like(xs)], -1) @ np.linalg.inv(K).T @ R  # world directions (R^T d)
    origin = -R.T @ t
    depth = np.full((h, w), np.inf)
    image = np.zeros((h, w, 3), np.float32)
    for facet in facets:
        n = facet.normal
        denom = rays @ n
        with np.errstate(divide="ignore", invalid="ignore"):
            s = (n @ (facet.centre - origin)) / denom
        hit = origin + s[..., None] * rays - facet.centre
        a, b = hit @ facet.u, hit @ facet.v
        inside = (s > 0) & (np.abs(a) < facet.half[0]) & (np.abs(b) < facet.half[1]) & (s < depth)
        if not inside.any():
            continue
        texture = textures[facet.texture]
        th, tw = texture.shape[:2]
        mx = ((a / facet.half[0] + 1) / 2 * (tw - 1)).astype(np.float32)
        my = ((b / facet.half[1] + 1) / 2 * (th - 1)).astype(np.float32)
        sampled = cv2.remap(texture, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        image[inside] = sampled[inside]
        depth[inside] = s[inside]
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


@lru_cache(maxsize=1)
def load_textures() -> tuple[np.ndarray, ...]:
    """The textures, resized; cached (read-only arrays)."""
    textures = []
    for name in TEXTURES:
        picture = to_rgb(load_image(name, NAME))
        texture = cv2.resize(picture, (TEXTURE_SIZE, TEXTURE_SIZE), interpolation=cv2.INTER_AREA).astype(np.float32)
        texture.setflags(write=False)
        textures.append(texture)
    return tuple(textures)


def scene(index: int) -> tuple[list[Facet], np.ndarray, np.ndarray]:
    """(facets, R, t) of pair ``index``, ``X1 = R X0 + t``; deterministic."""
    rng = np.random.default_rng(crc_seed(NAME, VERSION, index))
    facets = make_scene(rng)
    baseline = 0.15 + 1.05 * index / (PAIRS - 1)
    phi = rng.uniform(0, 2 * np.pi)
    direction = np.array([np.cos(phi), 0.35 * np.sin(phi), rng.uniform(-0.3, 0.3)])
    centre = baseline * direction / np.linalg.norm(direction)
    R = look_at(centre, SCENE_CENTRE + rng.uniform(-0.3, 0.3, 3), rng.uniform(-8, 8))
    return facets, R, -R @ centre


def generate_pair(index: int, textures) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(image 0, image 1, R, t) of pair ``index``; deterministic."""
    facets, R, t = scene(index)
    K = intrinsics()
    return render(facets, textures, K, np.eye(3), np.zeros(3)), render(facets, textures, K, R, t), R, t


def pair_name(index: int) -> str:
    return f"pair_{index:02d}"


def _is_current(folder: Path) -> bool:
    stamp = folder / "VERSION"
    return stamp.is_file() and stamp.read_text().strip() == VERSION and (folder / "pairs.json").is_file()


def generate(data_dir: Path, progress: bool = False) -> Path:
    """Generate the pairs once under ``<data_dir>/pose-synth`` and return that folder."""
    target = Path(data_dir) / NAME
    remove_stale_staging(target)
    if _is_current(target):
        return target
    with staged_folder(target, keep_concurrent=_is_current) as staging:
        write_pairs(staging, range(PAIRS), progress)
        (staging / "VERSION").write_text(VERSION + "\n")
    return target


def write_pairs(folder: Path, indices, progress: bool = False) -> None:
    """Write pairs ``indices`` (images and ``pairs.json``) into ``folder``."""
    textures = load_textures()
    records = {}
    for index in bar(list(indices), desc=f"{NAME}: pairs", unit="pair", enabled=progress):
        image0, image1, R, t = generate_pair(index, textures)
        pair = Path(folder) / pair_name(index)
        pair.mkdir(parents=True)
        for k, image in enumerate((image0, image1)):
            if not cv2.imwrite(str(pair / f"{k}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
                raise DatasetError(f"{NAME}: cannot write {pair / f'{k}.png'}")
        K = intrinsics().tolist()
        records[pair_name(index)] = {"K0": K, "K1": K, "R": R.tolist(), "t": t.tolist()}
    (Path(folder) / "pairs.json").write_text(json.dumps(records, indent=1) + "\n")


def open_pose_folder(root: Path, name: str = NAME, version: str = "") -> PoseSet:
    """Read ``pairs.json`` and the pair folders; a missing file is a DatasetError naming it."""
    index = root / "pairs.json"
    if not index.is_file():
        raise DatasetError(f"dataset {name!r}: {index} is missing; delete {root} to regenerate it")
    try:
        records = json.loads(index.read_text())
        pairs = []
        for pair, r in records.items():
            images = (root / pair / "0.png", root / pair / "1.png")
            for path in images:
                if not path.is_file():
                    raise DatasetError(f"dataset {name!r}: image {path} is missing; delete {root} to regenerate it")
            arrays = [np.asarray(r[k], np.float64) for k in ("K0", "K1", "R", "t")]
            pairs.append(PosePair(pair, images, *arrays))
    except (ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"dataset {name!r}: {index} is damaged ({exc}); delete {root} to regenerate it") from None
    return PoseSet(name, tuple(pairs), version=version)


class PoseSynth(DatasetSource):
    name = NAME
    kind = "pose"
    default_protocol = "relative-pose"
    summary = "embedded synthetic two-view pairs (24, 640x480, textured planar facets, known K and poses)"
    embedded = True

    def open(self, data_dir: Path, progress: bool = True) -> PoseSet:
        root = generate(Path(data_dir), progress=progress)
        return open_pose_folder(root, version=f"synth{VERSION}")

    def download(self, data_dir: Path, progress: bool = True) -> Path:
        return generate(Path(data_dir), progress=progress)
