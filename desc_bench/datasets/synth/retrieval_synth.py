"""The embedded retrieval dataset ``retrieval-synth``: an Oxford5k in miniature, no download.

Built from scikit-image's bundled pictures (:mod:`.sources`), written in the Oxford Buildings
layout (``jpg/*.jpg``, ``gt/<landmark>_<k>_{query,good,ok,junk}.txt``) and read by the same code
as Oxford5k (:mod:`desc_bench.datasets.retrieval`):

- six *landmarks* (astronaut, coffee, rocket, chelsea, stereo_motorcycle, camera), each enlarged to
  cover 2 x the view and seen in ``views`` camera views (:func:`.geometry.view_quad`, strength
  0.35..0.95, a zoom of 0.3..1 about a random point: crops), each under an exposure change
  (:func:`.photometry.exposure_change`) and with clutter: a rectangle (10..30 % of the image) of
  another picture pasted over it;
- *distractors*: views of seven other pictures (immunohistochemistry, hubble_deep_field, coins,
  moon, retina, clock, page);
- *queries*: ``queries`` views per landmark (strength 0.2), each with a box (55..75 % of the image);
  like Oxford, the query image is in the database and is one of its own good images;
- labels by the visible fraction f of the query box in each view (the box's grid mapped through
  the homographies, outside the view or under the clutter = hidden): good f >= 0.6, ok 0.25..0.6,
  junk 0 < f < 0.25 (Oxford: "ok: more than 25 % clearly visible"), f = 0: a negative;
- the vocabulary's training images ``train/*.jpg``: views of seven pictures used nowhere else
  (brick, gravel, grass, text, colorwheel, logo, cell): the "other dataset" of the paper's setting.

Images 512x384 JPEG (quality 95). Generated once under ``<data_dir>/retrieval-synth`` (atomically,
a ``VERSION`` file marks a complete set of this generator version and layout).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ...io.atomic import remove_stale_staging, staged_folder
from ...io.progress import bar
from ..base import DatasetSource
from ..retrieval import KIND, ORIGINAL, RetrievalSet, _image_index, read_original_gt
from .geometry import view_matrix, view_quad, warp
from .photometry import exposure_change
from .seeds import crc_seed
from .sources import cover, load_image, to_rgb

NAME = "retrieval-synth"
VERSION = "1"
SIZE = (512, 384)
MARGIN = 2.0
LANDMARKS = ("astronaut", "coffee", "rocket", "chelsea", "stereo_motorcycle", "camera")
DISTRACTORS = ("immunohistochemistry", "hubble_deep_field", "coins", "moon", "retina", "clock", "page")
TRAINING = ("brick", "gravel", "grass", "text", "colorwheel", "logo", "cell")
GOOD, OK = 0.6, 0.25


@dataclass(frozen=True)
class Layout:
    """How big the generated collection is (the registered dataset uses the defaults)."""

    landmarks: int = 6
    views: int = 9  # database views per landmark besides the queries
    queries: int = 2  # per landmark
    distractor_views: int = 4  # per distractor picture
    distractors: int = 7
    train_views: int = 4  # per training picture
    size: tuple[int, int] = SIZE

    def key(self) -> str:
        return f"{VERSION}:{self.landmarks}:{self.views}:{self.queries}:{self.distractor_views}:{self.distractors}" + (
            f":{self.train_views}:{self.size[0]}x{self.size[1]}"
        )


def _picture(name: str, size) -> np.ndarray:
    return cover(to_rgb(load_image(name, NAME)), size, MARGIN)


def _view(rng, picture, size, strength: float, zoom: tuple[float, float]) -> np.ndarray:
    """Source-to-view homography of a random (possibly zoomed-in) camera view."""
    quad = view_quad(rng, picture.shape, size, strength)
    z = rng.uniform(*zoom)
    pivot = quad[0] + (quad[2] - quad[0]) * rng.uniform(0.25, 0.75, size=2)
    return view_matrix(pivot + z * (quad - pivot), size)


def _clutter(rng, image: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    h, w = image.shape[:2]
    area = rng.uniform(0.10, 0.30) * h * w
    aspect = rng.uniform(0.6, 1.6)
    cw, ch = int(min(w - 1, np.sqrt(area * aspect))), int(min(h - 1, np.sqrt(area / aspect)))
    x0, y0 = int(rng.integers(0, w - cw)), int(rng.integers(0, h - ch))
    ox, oy = int(rng.integers(0, other.shape[1] - cw)), int(rng.integers(0, other.shape[0] - ch))
    out = image.copy()
    out[y0 : y0 + ch, x0 : x0 + cw] = other[oy : oy + ch, ox : ox + cw]
    return out, (x0, y0, x0 + cw, y0 + ch)


def _visible(box, g_query: np.ndarray, g_view: np.ndarray, size, occluder) -> float:
    """Fraction of a 24x24 grid over the query box that lands inside the view and off its clutter."""
    x1, y1, x2, y2 = box
    xs, ys = np.meshgrid(np.linspace(x1, x2, 24), np.linspace(y1, y2, 24))
    pts = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])
    p = (g_view @ np.linalg.inv(g_query)) @ pts
    x, y = p[0] / p[2], p[1] / p[2]
    inside = (x >= 0) & (x <= size[0] - 1) & (y >= 0) & (y <= size[1] - 1)
    if occluder is not None:
        ox1, oy1, ox2, oy2 = occluder
        inside &= ~((x >= ox1) & (x < ox2) & (y >= oy1) & (y < oy2))
    return float(inside.mean())


def generate(folder: Path, layout: Layout = Layout(), progress: bool = False) -> dict[str, np.ndarray]:
    """Write the collection into ``folder`` (``jpg/``, ``gt/``, ``train/``); returns the images."""
    size = layout.size
    fill = [_picture(n, size) for n in DISTRACTORS]
    images: dict[str, np.ndarray] = {}
    jpg, gt, train = folder / "jpg", folder / "gt", folder / "train"
    for sub in (jpg, gt, train):
        sub.mkdir(parents=True, exist_ok=True)
    for li, name in enumerate(bar(LANDMARKS[: layout.landmarks], desc=f"{NAME}: landmarks", enabled=progress)):
        rng = np.random.default_rng(crc_seed(NAME, layout.key(), "landmark", name))
        picture = _picture(name, size)
        views = []  # (image name, homography, occluder)
        for k in range(layout.queries + layout.views):
            is_query = k < layout.queries
            strength = 0.2 if is_query else rng.uniform(0.35, 0.95)
            g = _view(rng, picture, size, strength, (1, 1) if is_query else (0.3, 1))
            image = exposure_change(rng, warp(picture, g, size), 0 if is_query else int(rng.integers(1, 4)))
            occluder = None
            if not is_query:
                image, occluder = _clutter(rng, image, fill[(li + k) % len(fill)])
            key = f"{name}_{k:03d}"
            images[key] = image
            views.append((key, g, occluder))
        for q in range(layout.queries):
            key, g_query, _ = views[q]
            w, h = size
            fw, fh = rng.uniform(0.55, 0.75, size=2)
            cx, cy = rng.uniform(0.4, 0.6) * w, rng.uniform(0.4, 0.6) * h
            box = (cx - fw * w / 2, cy - fh * h / 2, cx + fw * w / 2, cy + fh * h / 2)
            labels = {"good": [], "ok": [], "junk": []}
            for other, g, occluder in views:
                f = 1.0 if other == key else _visible(box, g_query, g, size, occluder)
                label = "good" if f >= GOOD else "ok" if f >= OK else "junk" if f > 0 else None
                if label:
                    labels[label].append(other)
            stem = gt / f"{name}_{q + 1}"
            Path(f"{stem}_query.txt").write_text(f"oxc1_{key} " + " ".join(f"{v:.1f}" for v in box) + "\n")
            for label, names in labels.items():
                Path(f"{stem}_{label}.txt").write_text("".join(f"{n}\n" for n in names))
    for di, name in enumerate(DISTRACTORS[: layout.distractors]):
        rng = np.random.default_rng(crc_seed(NAME, layout.key(), "distractor", name))
        for k in range(layout.distractor_views):
            g = _view(rng, fill[di], size, rng.uniform(0.3, 0.9), (0.5, 1))
            images[f"{name}_{k:03d}"] = exposure_change(rng, warp(fill[di], g, size), int(rng.integers(0, 3)))
    for key, image in images.items():
        _write(jpg / f"{key}.jpg", image)
    for name in TRAINING:
        rng = np.random.default_rng(crc_seed(NAME, layout.key(), "train", name))
        picture = _picture(name, size)
        for k in range(layout.train_views):
            g = _view(rng, picture, size, rng.uniform(0.2, 0.8), (0.6, 1))
            _write(train / f"{name}_{k:03d}.jpg", exposure_change(rng, warp(picture, g, size), int(rng.integers(0, 3))))
    return images


def _write(path: Path, image: np.ndarray) -> None:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise OSError(f"cannot encode {path}")
    path.write_bytes(data.tobytes())


def _is_current(folder: Path, layout: Layout) -> bool:
    stamp = folder / "VERSION"
    return stamp.is_file() and stamp.read_text().strip() == layout.key()


def generate_synthetic(data_dir: Path, layout: Layout = Layout(), progress: bool = False) -> Path:
    """Generate the collection once under ``<data_dir>/retrieval-synth`` and return that folder."""
    target = Path(data_dir) / (NAME if layout == Layout() else f"{NAME}-{crc_seed(layout.key()):08x}")
    remove_stale_staging(target)
    if _is_current(target, layout):
        return target
    with staged_folder(target, overwrite=True, keep_concurrent=lambda f: _is_current(f, layout)) as staging:
        generate(staging, layout, progress)
        (staging / "VERSION").write_text(layout.key() + "\n")
    return target


def open_synthetic(folder: Path, name: str = NAME, words: int = 1024) -> RetrievalSet:
    """The generated collection in ``folder`` as a :class:`RetrievalSet` (training images: train/)."""
    index = _image_index(folder / "jpg")
    queries = read_original_gt(folder / "gt", {n: i for i, n in enumerate(index)})
    train = tuple(_image_index(folder / "train").values())
    version = f"synth{(folder / 'VERSION').read_text().strip().replace(':', '-')}"
    size = max(cv2.imread(str(next(iter(index.values())))).shape[:2]) if index else SIZE[0]
    return RetrievalSet(name, version, tuple(index.values()), queries, ORIGINAL, train, f"{name}/train", words, size)


class RetrievalSynth(DatasetSource):
    name = NAME
    kind = KIND
    default_protocol = "bow-retrieval"
    summary = "embedded miniature Oxford5k: 6 landmarks x 11 views, 28 distractors, 12 queries (512x384)"
    embedded = True

    def open(self, data_dir: Path, progress: bool = True) -> RetrievalSet:
        return open_synthetic(generate_synthetic(Path(data_dir), progress=progress))

    def download(self, data_dir: Path, progress: bool = True) -> Path:
        return generate_synthetic(Path(data_dir), progress=progress)
