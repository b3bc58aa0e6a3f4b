"""Image retrieval datasets: Oxford5k and Paris6k (Philbin et al. 2007, 2008) and their revisited
versions ROxford5k and RParis6k (Radenovic et al., CVPR 2018). Dataset kind ``"retrieval"``.

Layout under the data root (what ``desc-bench data download NAME`` makes)::

    oxford5k/jpg/*.jpg                         oxbuild_images-v1.tgz (5,062 images)
    oxford5k/gt/<landmark>_<k>_{query,good,ok,junk}.txt     gt_files_170407.tgz
    paris6k/jpg/<landmark>/*.jpg               paris_1-v1.tgz + paris_2-v1.tgz (6,412 images)
    paris6k/gt/...                             paris_120310.tgz
    roxford5k/gnd_roxford5k.pkl, rparis6k/gnd_rparis6k.pkl   revisitop ground truth (images of the
                                                              original set)

Original ground truth: a query file line is ``<image> x1 y1 x2 y2`` (Oxford prefixes the image with
``oxc1_``); positives are good + ok, junk is skipped by the AP; the query image is part of the
database, as in the official evaluation. The revisited ground truth is a pickle of plain data
({imlist, qimlist, gnd: [{bbx, easy, hard, junk}]}); :func:`read_gnd` loads it with an unpickler
that admits only builtin containers and numpy arrays/scalars, so no code in the file can run.
Queries are cropped to their boxes (:meth:`RetrievalSet.query_image`).

The hosts publish no checksums: downloads are bounded in size, extracted safely and checked for
their structure (image counts, ground-truth files) before they are moved into place; SOURCE.json
records the sha256 of what was fetched. The vocabulary of each set is learned on the other one
(Paris6k for Oxford5k and vice versa, as in the HardNet paper): ``RetrievalSet.train_images``.
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np

from ..errors import DatasetError, DownloadError
from ..io.download import Archive, ExtractLimits, fetch, fetch_archive
from .base import DatasetSource, imread

KIND = "retrieval"
ORIGINAL = ("original",)
REVISITED = ("easy", "medium", "hard")
_GT_NAME = re.compile(r"^(?P<query>.+_\d+)_query\.txt$")


@dataclass(frozen=True)
class Query:
    """One query: its image (database index), box ``(x1, y1, x2, y2)`` and, per protocol, the
    database indices of its positives and junk."""

    name: str
    image: int
    box: tuple[float, float, float, float]
    truth: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]  # protocol -> (positives, junk)


@dataclass(frozen=True)
class RetrievalSet:
    name: str
    version: str
    images: tuple[Path, ...]  # the database, in order
    queries: tuple[Query, ...]
    protocols: tuple[str, ...] = ORIGINAL
    train_images: tuple[Path, ...] = ()  # the vocabulary's training images
    train_source: str = ""  # where they come from (stated in every row)
    default_words: int = 65536
    image_size: int = 1024  # longest image side (Oxford, Paris: 1024): scales the SV error threshold
    query_images: dict[int, Path] = field(default_factory=dict)  # query image not in the database
    expected_images: int | None = None  # the full database's size (None: not known); fewer: incomplete

    def image(self, index: int) -> np.ndarray:
        """Database image ``index`` as RGB uint8."""
        return _rgb(self.images[index])

    def train_image(self, index: int) -> np.ndarray:
        """Training image ``index`` (vocabulary) as RGB uint8."""
        return _rgb(self.train_images[index])

    def query_path(self, query: Query) -> Path:
        return self.query_images.get(query.image) or self.images[query.image]

    def query_image(self, query: Query) -> np.ndarray:
        """The query image cropped to its box as revisitop's python code does (PIL ``crop(bbx)``:
        coordinates rounded, right and bottom edges excluded), clipped to the image; RGB uint8."""
        image = _rgb(self.query_path(query))
        h, w = image.shape[:2]
        x1, y1, x2, y2 = (int(round(v)) for v in query.box)
        x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
        if x2 - x1 < 2 or y2 - y1 < 2:
            raise DatasetError(f"query {query.name}: box {query.box} is empty inside its {w}x{h} image")
        return np.ascontiguousarray(image[y1:y2, x1:x2])


def _rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(imread(path, cv2.IMREAD_COLOR, "image"), cv2.COLOR_BGR2RGB)


# ------------------------------------------------------------------------------- ground truth


def _image_index(folder: Path) -> dict[str, Path]:
    """Image stem -> path for every .jpg/.png under ``folder`` (Paris nests them per landmark)."""
    return {p.stem: p for p in sorted(folder.rglob("*")) if p.suffix.lower() in (".jpg", ".jpeg", ".png")}


def _lines(path: Path) -> list[str]:
    try:
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read ground-truth file {path}: {exc}") from None


def read_original_gt(gt_dir: Path, index: dict[str, int]) -> tuple[Query, ...]:
    """Queries of the Oxford / Paris ground-truth files; names are looked up in ``index``."""
    gt_dir = Path(gt_dir)
    names = sorted(m.group("query") for p in gt_dir.glob("*_query.txt") if (m := _GT_NAME.match(p.name)))
    if not names:
        raise DatasetError(f"no <landmark>_<k>_query.txt ground-truth files in {gt_dir}")

    def lookup(name: str, path: Path) -> int:
        key = name[5:] if name.startswith("oxc1_") else name
        if key not in index:
            raise DatasetError(f"ground-truth file {path} names image {key!r}, which is not in the image folder")
        return index[key]

    queries = []
    for name in names:
        path = gt_dir / f"{name}_query.txt"
        parts = _lines(path)[0].split() if _lines(path) else []
        if len(parts) != 5:
            raise DatasetError(f"query file {path}: expected `<image> x1 y1 x2 y2`, found {' '.join(parts)!r}")
        try:
            box = tuple(float(v) for v in parts[1:])
        except ValueError:
            raise DatasetError(f"query file {path}: the box {parts[1:]} is not four numbers") from None
        lists = {}
        for label in ("good", "ok", "junk"):
            file = gt_dir / f"{name}_{label}.txt"
            if not file.is_file():
                raise DatasetError(f"missing ground-truth file {file}")
            lists[label] = tuple(lookup(line.split()[0], file) for line in _lines(file))
        positives = lists["good"] + lists["ok"]
        queries.append(Query(name, lookup(parts[0], path), box, {"original": (positives, lists["junk"])}))
    return tuple(queries)


class _PlainData(pickle.Unpickler):
    """Unpickles builtin containers and numpy arrays/scalars only; any other global is refused."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "bytearray"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        *((m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray") for n in ("_reconstruct", "scalar")),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing {module}.{name}: ground-truth files hold plain data only")
        return super().find_class(module, name)


def read_gnd(path: Path) -> dict:
    """A revisitop ``gnd_*.pkl`` as plain data, without executing code from the file."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            data = _PlainData(handle, encoding="latin1").load()
    except FileNotFoundError:
        raise DatasetError(f"missing ground-truth file {path}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DatasetError(f"ground-truth file {path} is not a revisitop gnd pickle: {exc}") from None
    if not isinstance(data, dict) or not {"imlist", "qimlist", "gnd"} <= set(data):
        raise DatasetError(f"ground-truth file {path} must be a dict with imlist, qimlist and gnd")
    if len(data["gnd"]) != len(data["qimlist"]):
        counts = f"{len(data['gnd'])} gnd entries for {len(data['qimlist'])} queries"
        raise DatasetError(f"ground-truth file {path}: {counts}")
    return data


def revisited_queries(data: dict, path: Path) -> tuple[Query, ...]:
    queries = []
    for name, entry in zip(data["qimlist"], data["gnd"]):
        try:
            easy, hard, junk = (tuple(int(i) for i in np.ravel(entry[k])) for k in ("easy", "hard", "junk"))
            box = tuple(float(v) for v in np.ravel(entry["bbx"]))
        except (KeyError, TypeError, ValueError):
            raise DatasetError(f"ground-truth file {path}: query {name} lacks bbx/easy/hard/junk") from None
        if len(box) != 4:
            raise DatasetError(f"ground-truth file {path}: query {name} has a box of {len(box)} numbers")
        truth = {"easy": (easy, junk + hard), "medium": (easy + hard, junk), "hard": (hard, junk + easy)}
        queries.append(Query(str(name), -1, box, truth))
    return tuple(queries)


# ------------------------------------------------------------------------------------ sources

_OX = "https://www.robots.ox.ac.uk/~vgg/data/oxbuildings/"
_PA = "https://www.robots.ox.ac.uk/~vgg/data/parisbuildings/"
_REVISITOP = "http://cmp.felk.cvut.cz/revisitop/data/datasets/"
_LIMITS = ExtractLimits(max_entries=20_000, max_member_bytes=64 << 20, max_total_bytes=6 << 30, max_ratio=20.0)
NO_CHECKSUM = "none published by the host: size bound, safe extraction and the structure check"


@dataclass(frozen=True)
class Original:
    folder: str
    images: tuple[str, ...]  # archive files
    gt: str
    base: str
    expected_images: int
    other: str  # the set the vocabulary is learned on


ORIGINALS = {
    "oxford5k": Original("oxford5k", ("oxbuild_images-v1.tgz",), "gt_files_170407.tgz", _OX, 5062, "paris6k"),
    "paris6k": Original("paris6k", ("paris_1-v1.tgz", "paris_2-v1.tgz"), "paris_120310.tgz", _PA, 6412, "oxford5k"),
}


def _check_images(expected: int, at_least: float):
    def check(folder: Path) -> Path:
        found = len(_image_index(folder))
        if found < at_least * expected:
            raise DatasetError(f"the archive holds {found} images; expected about {expected}")
        return folder

    return check


def _check_gt(folder: Path) -> Path:
    found = sorted(folder.rglob("*_query.txt"))
    if not found:
        raise DatasetError("the archive holds no <landmark>_<k>_query.txt ground-truth files")
    return found[0].parent


def _archive(url: str, name: str, max_bytes: int) -> Archive:
    return Archive((url,), name, max_bytes=max_bytes, checksum_source=NO_CHECKSUM, limits=_LIMITS)


def download_original(data_dir: Path, name: str, progress: bool = True) -> Path:
    spec = ORIGINALS[name]
    root = Path(data_dir) / spec.folder
    downloads = root / ".downloads"
    try:
        for k, archive in enumerate(spec.images):
            target = root / "jpg" / (f"part{k + 1}" if len(spec.images) > 1 else "")
            if not _image_index(target):
                share = 1 / len(spec.images)
                check = _check_images(int(spec.expected_images * share), 0.5)
                images = _archive(spec.base + archive, archive, 4 << 30)
                fetch_archive(images, downloads, target, check=check, progress=progress)
        if not (root / "gt").is_dir():
            gt = _archive(spec.base + spec.gt, spec.gt, 16 << 20)
            fetch_archive(gt, downloads, root / "gt", check=_check_gt, progress=progress)
    except DownloadError as exc:
        raise DownloadError(f"cannot download {name}: {exc}\nOr use the embedded `retrieval-synth`") from None
    return root


def download_gnd(data_dir: Path, name: str, progress: bool = True) -> Path:
    path = Path(data_dir) / name / f"gnd_{name}.pkl"
    if not path.is_file():
        fetch(f"{_REVISITOP}{name}/gnd_{name}.pkl", path, max_bytes=16 << 20, progress=progress)
        try:
            read_gnd(path)
        except DatasetError:
            path.unlink()  # never keep a file that is not plain-data ground truth
            raise
    return path


class OriginalSource(DatasetSource):
    kind = KIND
    default_protocol = "bow-retrieval"
    base_name: ClassVar[str] = ""

    def _folders(self, data_dir: Path) -> tuple[Path, Path]:
        root = Path(data_dir) / ORIGINALS[self.base_name].folder
        return root / "jpg", root / "gt"

    def availability(self, data_dir: Path) -> str | None:
        jpg, gt = self._folders(data_dir)
        if not _image_index(jpg) or not any(gt.glob("*_query.txt")):
            return f"no images in {jpg} or no ground truth in {gt}; run `desc-bench data download {self.name}`"
        return None

    def _train(self, data_dir: Path) -> tuple[tuple[Path, ...], str]:
        other = ORIGINALS[self.base_name].other
        jpg = Path(data_dir) / ORIGINALS[other].folder / "jpg"
        images = tuple(_image_index(jpg).values())
        if not images:
            raise DatasetError(
                f"the {self.name} vocabulary is learned on {other} (as in the paper), whose images are not in "
                f"{jpg}; run `desc-bench data download {other}`"
            )
        return images, other

    def _database(self, data_dir: Path) -> tuple[dict[str, Path], str]:
        jpg, _ = self._folders(data_dir)
        index = _image_index(jpg)
        return index, f"{self.name}-{len(index)}"

    def open(self, data_dir: Path, progress: bool = True) -> RetrievalSet:
        index, version = self._database(data_dir)
        names = list(index)
        queries = read_original_gt(self._folders(data_dir)[1], {n: i for i, n in enumerate(names)})
        train, other = self._train(data_dir)
        expected = ORIGINALS[self.base_name].expected_images
        return RetrievalSet(
            self.name, version, tuple(index.values()), queries, ORIGINAL, train, other, expected_images=expected
        )

    def download(self, data_dir: Path, progress: bool = True) -> Path:
        download_original(data_dir, ORIGINALS[self.base_name].other, progress)
        return download_original(data_dir, self.base_name, progress)


class Oxford5k(OriginalSource):
    name = base_name = "oxford5k"
    summary = "Oxford Buildings: 5,062 images, 55 queries, good/ok/junk (vocabulary on Paris6k)"


class Paris6k(OriginalSource):
    name = base_name = "paris6k"
    summary = "Paris: 6,412 images, 55 queries, good/ok/junk (vocabulary on Oxford5k)"


class RevisitedSource(OriginalSource):
    def availability(self, data_dir: Path) -> str | None:
        jpg, _ = self._folders(data_dir)
        gnd = Path(data_dir) / self.name / f"gnd_{self.name}.pkl"
        if not _image_index(jpg) or not gnd.is_file():
            return f"no images in {jpg} or no {gnd}; run `desc-bench data download {self.name}`"
        return None

    def open(self, data_dir: Path, progress: bool = True) -> RetrievalSet:
        path = Path(data_dir) / self.name / f"gnd_{self.name}.pkl"
        data = read_gnd(path)
        index, _ = self._database(data_dir)
        missing = [n for n in [*data["imlist"], *data["qimlist"]] if str(n) not in index]
        if missing:
            raise DatasetError(f"{path} names {len(missing)} images not in the image folder, e.g. {missing[0]}")
        images = tuple(index[str(n)] for n in data["imlist"])
        queries = revisited_queries(data, path)
        where = {str(n): i for i, n in enumerate(data["imlist"])}
        query_images, fixed = {}, []
        for k, q in enumerate(queries):
            image = where.get(q.name, len(images) + k)
            if image >= len(images):
                query_images[image] = index[q.name]
            fixed.append(Query(q.name, image, q.box, q.truth))
        train, other = self._train(data_dir)
        version = f"{self.name}-{len(images)}-{len(queries)}"
        fixed = tuple(fixed)
        return RetrievalSet(self.name, version, images, fixed, REVISITED, train, other, query_images=query_images)

    def download(self, data_dir: Path, progress: bool = True) -> Path:
        super().download(data_dir, progress)
        return download_gnd(data_dir, self.name, progress).parent


class ROxford5k(RevisitedSource):
    name = "roxford5k"
    base_name = "oxford5k"
    summary = "Revisited Oxford: 4,993 images, 70 queries, Easy/Medium/Hard (vocabulary on Paris6k)"


class RParis6k(RevisitedSource):
    name = "rparis6k"
    base_name = "paris6k"
    summary = "Revisited Paris: 6,322 images, 70 queries, Easy/Medium/Hard (vocabulary on Oxford5k)"
