"""Bag-of-words image retrieval: the HardNet paper's Oxford5k / Paris6k table (BoW, +SV, +QE).

Per image, local features from the feature store: a detector's frames (``--detector``, default
``dog``: OpenCV SIFT's DoG with size and orientation; ``--budget`` keypoints) described by the
descriptor (patch descriptors on patches around the frames); queries are cropped to their boxes.
A vocabulary of ``words`` (0: the dataset's default, 1,024 for retrieval-synth, 65,536 for the real
sets; the paper used 1M) is learned by faiss k-means (``iterations``, ``seed``) on the features of
the dataset's training images (the other dataset for Oxford5k / Paris6k, as in the paper; the
``train/`` collection of retrieval-synth) and cached by content (:mod:`..retrieval.vocabulary`).
Then (:mod:`..retrieval.index`, :mod:`..retrieval.verify`):

- ``bow``: hard assignment (``assignment``: exact, or approximate with faiss HNSW), tf-idf, L2, ranking
  by dot product through a scipy.sparse inverted file;
- ``bow+sv``: the ``top`` results spatially verified (affine hypotheses from single correspondences
  of local frames, the best refined) and verified images ranked first, by inliers;
- ``bow+sv+qe``: average query expansion: the query vector averaged with those of up to ``qe_size``
  verified results with at least ``qe_inliers`` inliers (their features that their model maps inside
  the query box: Chum et al.'s back-projection), the expanded query re-issued and its top results
  verified against the query; the images verified by the first pass keep their places at the top,
  followed by the re-issued query's list (newly verified images first, by inliers).

mAP with the official Oxford AP (trapezoid, junk skipped; :mod:`..retrieval.ap`), per protocol
(original, or Easy / Medium / Hard on the revisited sets). Every row's notes record the detector,
budget, vocabulary (words, training source, content key) and every SV / QE parameter.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...adapters.base import Descriptor
from ...adapters.prepare import dense_mode
from ...errors import DatasetError, InputError, UnknownNameError
from ...io.progress import bar
from .. import detectors as det
from ..features import Extraction, ImageFeatures, source_fingerprint
from ..matching import describe
from ..retrieval import ap as apm
from ..retrieval.index import InvertedFile
from ..retrieval.verify import Frames2D, SVParams, inside_query, rerank, tentative, verify
from ..retrieval.vocabulary import ASSIGNMENTS, assign, assigner, train_vocabulary
from .base import Benchmark, Context, Headline, Subject, TableSpec, TimingSample, per_unit

_CODE = source_fingerprint([Path(det.__file__)])
SV_ERROR_AT_1024 = 40.0  # tsattler/geometric_burstiness, for Oxford's 1024 px images
METRICS = ("bow", "bow+sv", "bow+sv+qe")


def query_units(queries, per_query: np.ndarray):
    """The queries with a positive image as bootstrap units of a mAP row (None if names repeat)."""
    names = [q.name for q, ap in zip(queries, per_query) if np.isfinite(ap)]
    if len(set(names)) != len(names):
        return None
    return per_unit("query", dict(zip(names, (float(ap) for ap in per_query if np.isfinite(ap)))))


@dataclass(frozen=True)
class BowOptions:
    detector: str = "dog"
    budget: int = 1000  # keypoints per image
    seed: int = 0
    words: int = 0  # 0: the dataset's default
    iterations: int = 20
    assignment: str = "exact"  # or "hnsw" (approximate nearest word, for large vocabularies)
    top: int = 1000  # results spatially verified
    sv_error: float = 0.0  # px; 0: 40 px at Oxford's 1024 px, scaled to the dataset's image size
    sv_min_inliers: int = 3
    qe_size: int = 5
    qe_inliers: int = 20

    def __post_init__(self):
        if self.detector not in det.DETECTORS:
            raise UnknownNameError("detector", self.detector, list(det.DETECTORS))
        for key in ("budget", "top", "iterations", "sv_min_inliers", "qe_inliers"):
            if getattr(self, key) < 1:
                raise InputError(f"bow-retrieval: {key} must be at least 1, got {getattr(self, key)}")
        if self.assignment not in ASSIGNMENTS:
            raise InputError(f"bow-retrieval: assignment must be one of {', '.join(ASSIGNMENTS)}")
        if self.words < 0 or self.words == 1 or self.qe_size < 0 or self.sv_error < 0:
            raise InputError("bow-retrieval: words must be 0 or >= 2, qe_size >= 0 and sv_error >= 0")


@dataclass(frozen=True)
class Indexed:
    frames: Frames2D
    words: np.ndarray


class BowRetrieval(Benchmark):
    name = "bow-retrieval"
    summary = "image retrieval: bag of words, + spatial verification, + query expansion (mAP, Oxford AP)"
    accepts = ("retrieval",)
    time_unit = "image"
    Options = BowOptions
    tasks = ("retrieval",)
    headlines = (
        Headline("BoW+SV+QE mAP", "retrieval", "bow+sv+qe", (("subset", "original"),)),
        Headline("BoW+SV+QE mAP (Medium)", "retrieval", "bow+sv+qe", (("subset", "medium"),)),
    )
    tables = (
        TableSpec(
            "Image retrieval mAP (BoW / +SV / +QE, official Oxford AP)",
            metrics=METRICS,
            rows=("descriptor", "variant"),
            columns="metric",
            order=METRICS,
            groups=("dataset", "subset"),
            labels=(("bow", "BoW"), ("bow+sv", "BoW+SV"), ("bow+sv+qe", "BoW+SV+QE")),
            percent=True,
            digits=1,
        ),
    )

    def mode(self, descriptor: Descriptor) -> str:
        return dense_mode(descriptor)

    def words(self, dataset: Any) -> int:
        return self.options.words or dataset.default_words

    def data_files(self, dataset: Any, context: Context) -> list[Path]:
        return [*dataset.images, *dataset.query_images.values(), *dataset.train_images]

    def evaluation_key(self, dataset: Any, context: Context) -> str:
        # the ground truth (query boxes, good/ok/junk, E/M/H) is part of the key: corrected lists rescore
        truth = hashlib.sha256(repr(dataset.queries).encode()).hexdigest()[:16]
        return f"{dataset.version}-{len(dataset.queries)}-{dataset.train_source}-{truth}"

    # ---- features -----------------------------------------------------------------------------
    def timing_sample(self, descriptor, dataset) -> TimingSample | None:
        if not dataset.queries:
            return None
        o, pixels = self.options, dataset.query_image(dataset.queries[0])
        return TimingSample(pixels, det.detect(o.detector, pixels, o.budget, o.seed), f"{o.detector} {o.budget}")

    def features(self, descriptor, dataset, store, context):
        o = self.options
        extraction = Extraction(f"retrieval-{_CODE}", o.detector, o.budget, o.seed)

        def extract(item: str, path: Path, load, unreadable_ok: bool = False) -> ImageFeatures:
            def compute() -> ImageFeatures:
                try:
                    pixels = load()
                except DatasetError as exc:  # Paris6k ships 20 corrupted images: they stay, without features
                    if not unreadable_ok:
                        raise
                    context.log(f"warning: {exc}; the image stays in the database without features")
                    return ImageFeatures(np.zeros((0, 2)), np.zeros((0, descriptor.dim), np.float32))
                frames = det.detect(o.detector, pixels, o.budget, o.seed)
                values = describe(descriptor, pixels, frames).numpy()
                return ImageFeatures(frames.xy, values, frames.scale, frames.angle)

            return store.image(item, [path], compute, extraction)

        label = f"{self.name} {descriptor.name}"
        train = [
            extract(f"train/{p.parent.name}/{p.stem}", p, lambda i=i: dataset.train_image(i), unreadable_ok=True)
            for i, p in enumerate(bar(dataset.train_images, desc=f"{label}: vocabulary", enabled=context.progress))
        ]
        database = [
            (f"db/{p.stem}", p, extract(f"db/{p.stem}", p, lambda i=i: dataset.image(i), unreadable_ok=True))
            for i, p in enumerate(bar(dataset.images, desc=f"{label}: database", enabled=context.progress))
        ]
        queries = [
            (f"query/{q.name}", path, extract(f"query/{q.name}", path, lambda q=q: dataset.query_image(q)))
            for q in dataset.queries
            for path in (dataset.query_path(q),)
        ]
        descriptors = np.concatenate([f.descriptors for f in train]) if train else np.zeros((0, descriptor.dim))
        cache = None if store.root is None else store.key.folder(store.root, "features") / "vocabulary"
        context.log(f"{self.name}: k-means of {len(descriptors)} descriptors into {self.words(dataset)} words")
        centroids, key = train_vocabulary(descriptors, self.words(dataset), o.iterations, o.seed, cache, context.log)
        words = []  # the faiss index over the words, built on the first miss

        def assigned(item: str, path: Path, f: ImageFeatures) -> Indexed:
            def compute() -> dict[str, np.ndarray]:
                if not words:
                    words.append(assigner(centroids, o.assignment))
                return {"words": assign(words[0], f.descriptors)}

            # stored per image and vocabulary, so that a run resumes here too (1M words: hours)
            stored = store.arrays(f"words-{key}-{o.assignment}/{item}", [path], compute, extraction)
            return Indexed(Frames2D(f.xy, f.scale, f.angle), stored["words"])

        indexed = {
            part: [assigned(*e) for e in bar(entries, desc=f"{label}: assignment ({part})", enabled=context.progress)]
            for part, entries in (("database", database), ("queries", queries))
        }
        return {**indexed, "vocabulary": key, "train_descriptors": len(descriptors)}

    # ---- evaluation ---------------------------------------------------------------------------
    def sv_params(self, dataset: Any) -> SVParams:
        error = self.options.sv_error or SV_ERROR_AT_1024 * dataset.image_size / 1024
        return SVParams(error=error, min_inliers=self.options.sv_min_inliers)

    def verified(self, order, frames, words, database, params: SVParams, found: dict) -> np.ndarray:
        """``order`` with its top results verified against (frames, words) and re-ranked."""
        for i in order[: self.options.top]:
            i = int(i)
            if i not in found:
                pairs = tentative(words, database[i].words, params.burst)
                found[i] = verify(frames, database[i].frames, pairs, params)
        return rerank(order, {i: n for i, (n, _) in found.items()}, self.options.top)

    def evaluate(self, features, dataset, subject: Subject, context: Context):
        o, params, n_words = self.options, self.sv_params(dataset), self.words(dataset)
        database, queries = features["database"], features["queries"]
        index = InvertedFile([d.words for d in database], n_words)
        rankings: dict[str, list[np.ndarray]] = {m: [] for m in METRICS}
        for q, query in zip(bar(dataset.queries, desc=f"{self.name}: verification", enabled=context.progress), queries):
            vector = index.vector(query.words)
            bow = apm.rank(index.search(vector))
            found: dict[int, tuple[int, Any]] = {}
            sv = self.verified(bow, query.frames, query.words, database, params, found)
            inliers = {i: n for i, (n, _) in found.items()}
            expand = [int(i) for i in sv[: o.top] if inliers.get(int(i), 0) >= o.qe_inliers][: o.qe_size]
            qe = sv
            if expand:
                x1, y1, x2, y2 = q.box
                size = (x2 - x1 + 1, y2 - y1 + 1)
                inside = [database[i].words[inside_query(database[i].frames, found[i][1], size)] for i in expand]
                expanded = index.average([vector, *(index.vector(w) for w in inside)])
                first = [int(i) for i in sv[: o.top] if found.get(int(i), (0, None))[0] > 0]
                requery = apm.rank(index.search(expanded))
                requery = self.verified(requery, query.frames, query.words, database, params, found)
                placed = set(first)
                qe = np.array(first + [int(i) for i in requery if int(i) not in placed], np.int64)
            for metric, order in zip(METRICS, (bow, sv, qe)):
                rankings[metric].append(order)
        notes = (
            f"detector={o.detector} budget={o.budget} seed={o.seed} words={n_words} iterations={o.iterations} "
            f"assignment={o.assignment} "
            f"vocabulary={dataset.train_source} ({features['train_descriptors']} descriptors, key "
            f"{features['vocabulary']}) top={o.top} {params.describe()} qe_size={o.qe_size} "
            f"qe_inliers={o.qe_inliers} queries={len(dataset.queries)} database={len(database)}"
        )
        # every other option that differs from its default makes different rows (the row key holds the variant)
        extra = [part for part in self.describe().split(":")[1:] if part.split("=")[0] not in ("detector", "budget")]
        extra = [part for part in extra if not part.startswith("words=")]
        variant = ":".join([f"det={o.detector}", f"budget={o.budget}", f"words={n_words}", *extra])
        expected = getattr(dataset, "expected_images", None)
        if expected and len(dataset.images) < expected:  # never passes for the full set in tables or checks
            variant += f":incomplete={len(dataset.images)}of{expected}"
            notes = f"incomplete: {len(dataset.images)} of {expected} images; {notes}"
        rows = []
        for protocol in dataset.protocols:
            truths = [apm.Truth.of(*q.truth[protocol]) for q in dataset.queries]
            for metric in METRICS:
                units = None
                try:
                    value, per_query = apm.mean_ap(rankings[metric], truths)
                    error = None
                    units = query_units(dataset.queries, per_query)
                except ValueError as exc:  # no query of this protocol has a positive image
                    value, error = None, f"{protocol}: {exc}"
                rows.append(
                    self.row(
                        subject,
                        dataset.name,
                        "all",
                        task="retrieval",
                        metric=metric,
                        value=value,
                        subset=protocol,
                        variant=variant,
                        notes=notes,
                        error=error,
                        units=units,
                    )
                )
        return rows
