"""The embedded ``hpatches-synth`` generator and the parts of desc_bench.datasets.synth it uses:
layout, determinism, jitter, correspondence, splits, tasks, atomic generation.

Unit tests run on the tiny set (4 sequences x 40 patches, about a second); the bytes of the full
default set are pinned in test_synth_bytes.py.
"""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest

from desc_bench.adapters.base import Frames
from desc_bench.adapters.prepare import extract_patches
from desc_bench.datasets import registry
from desc_bench.datasets.base import PATCH_TYPES, DatasetSource, PatchSet
from desc_bench.datasets.synth import frames as F
from desc_bench.datasets.synth import hpatches_synth as synth
from desc_bench.datasets.synth import patches as P
from desc_bench.datasets.synth import sources
from desc_bench.datasets.synth.splits import make_splits
from desc_bench.datasets.tasks import TaskFiles
from desc_bench.errors import DatasetError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "hpatches-synth"
    synth.generate_tiny(root)
    return root


@pytest.fixture(scope="module")
def view_sequence():
    """A v_ sequence with more patches, with its images."""
    return synth.generate_sequence(synth.VIEWPOINT_SOURCES[0], synth.SynthParams(patches=150), with_images=True)


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _normalised(patches: np.ndarray) -> np.ndarray:
    flat = patches.reshape(len(patches), -1).astype(np.float64)
    flat = flat - flat.mean(1, keepdims=True)
    return flat / (np.linalg.norm(flat, axis=1, keepdims=True) + 1e-9)


# ---------------------------------------------------------------------------------- layout


def test_tiny_layout_reads_back_with_patchset(tiny):
    patch_set = synth.open_patch_set(tiny)
    assert isinstance(patch_set, PatchSet)
    names = patch_set.sequence_names()
    assert names == ("i_coffee", "i_coins", "v_astronaut", "v_camera")
    assert sorted(p.name for p in tiny.iterdir() if p.is_dir() and p.name != "tasks") == sorted(names)
    for name in names:
        patches = patch_set.load(name)
        assert tuple(patches) == PATCH_TYPES
        for stack in patches.values():
            assert stack.shape == (40, 65, 65) and stack.dtype == np.uint8
        assert patch_set.patch_count(name) == 40
        image = cv2.imread(str(tiny / name / "e3.png"), cv2.IMREAD_UNCHANGED)
        assert image.shape == (40 * 65, 65)  # one gray channel, 65 px wide, N*65 tall
        assert patches["ref"].std() > 5  # real image content, not blank
    assert patch_set.tasks_dir == tiny / "tasks"
    assert patch_set.version.startswith("hpatches-synth-g" + synth.GENERATOR_VERSION + "-")


def test_params_json_describes_the_generation(tiny):
    info = json.loads((tiny / "params.json").read_text())
    assert info["generator"] == "hpatches-synth"
    assert info["generator_version"] == synth.GENERATOR_VERSION
    assert info["params"]["sequences"] == 4 and info["params"]["patches"] == 40
    assert info["jitter"]["e"]["translation"] < info["jitter"]["h"]["translation"] < info["jitter"]["t"]["translation"]
    overlap = info["measured_overlap"]
    assert 1.0 > overlap["e"]["mean"] > overlap["h"]["mean"] > overlap["t"]["mean"] > 0.4
    for name, seq in info["sequences"].items():
        homographies = np.array(seq["homographies_ref_to_k"])
        assert homographies.shape == (5, 3, 3)
        if name.startswith("i_"):
            assert np.allclose(homographies, np.eye(3)) and seq["change"] == "illumination"
        else:
            assert not np.allclose(homographies[0], np.eye(3), atol=1e-3) and seq["change"] == "viewpoint"
        assert seq["valid_frames"] >= seq["patches"] == 40


def test_generation_is_deterministic(tiny, tmp_path):
    again = synth.generate_tiny(tmp_path / "again")
    first, second = _files(tiny), _files(again)
    assert sorted(first) == sorted(second)
    different = [name for name in first if first[name] != second[name]]
    assert different == []
    assert synth.dataset_version(tiny) == synth.dataset_version(again)


def test_other_seed_or_size_gives_another_dataset_and_version(tiny, tmp_path):
    params = synth.SynthParams(sequences=2, patches=40, seed=1, n_pairs=200, n_queries=10, n_distractors=10)
    other = synth.ensure_hpatches_synth(tmp_path / "other", progress=False, params=params)
    assert synth.dataset_version(other) != synth.dataset_version(tiny)
    ref_other = cv2.imread(str(other / "i_coffee" / "ref.png"), cv2.IMREAD_GRAYSCALE)
    ref_tiny = cv2.imread(str(tiny / "i_coffee" / "ref.png"), cv2.IMREAD_GRAYSCALE)
    assert not np.array_equal(ref_other, ref_tiny)


# ---------------------------------------------------------------------------------- splits and tasks


def test_splits_follow_the_official_format(tiny):
    raw = json.loads((tiny / "tasks" / "splits" / "splits.json").read_text())
    assert set(raw) == {"a", "b", "c", "illum", "view", "full"}
    names = {"i_coffee", "i_coins", "v_astronaut", "v_camera"}
    for key, value in raw.items():
        assert value["name"] == key
    assert set(raw["full"]["test"]) == names and len(raw["full"]["test"]) == 4
    assert set(raw["illum"]["test"]) == {"i_coffee", "i_coins"}
    assert set(raw["view"]["test"]) == {"v_astronaut", "v_camera"}
    for key in "abc":
        test, train = set(raw[key]["test"]), set(raw[key]["train"])
        assert not test & train and test | train == names
        assert {s[0] for s in test} == {"i", "v"}  # both kinds in every test split


def test_default_splits_are_balanced_and_nearly_disjoint():
    names = tuple(s.sequence for s in synth.DEFAULT_PARAMS.sources())
    assert len(names) == 16 and sum(n.startswith("i_") for n in names) == 8
    splits = make_splits(names, seed=0)
    tests = [set(splits[k]["test"]) for k in "abc"]
    for test in tests:
        assert len(test) == 6 and sum(n.startswith("i_") for n in test) == 3
    assert len(tests[0] & tests[1]) == 0 and len(tests[0] | tests[1] | tests[2]) == 16
    assert splits == make_splits(names, seed=0)
    assert splits != make_splits(names, seed=1)


def test_task_files_are_consistent_with_the_patches(tiny):
    tasks = TaskFiles(tiny / "tasks")
    splits = tasks.splits()
    for split in ("a", "full"):
        test = set(splits[split].test)
        for kind in ("pos", "neg_intra", "neg_inter"):
            pairs = tasks.pairs(kind, split)
            assert len(pairs) == synth.TINY_PARAMS.n_pairs
            names = np.asarray(pairs.sequences)
            assert set(names[pairs.s1]) <= test and set(names[pairs.s2]) <= test
            assert pairs.idx1.max() < 40 and pairs.idx2.max() < 40 and pairs.t1.max() <= 5
        pos = tasks.pairs("pos", split)
        assert np.array_equal(pos.idx1, pos.idx2) and np.array_equal(pos.s1, pos.s2)
        assert (pos.t1 != pos.t2).all()
        queries, distractors = tasks.queries(split), tasks.distractors(split)
        assert 0 < len(queries) <= 40 and len(distractors) > 0
        assert set(queries.names()) <= test and queries.idx.max() < 40
        query_keys = set(zip(queries.names(), queries.idx))
        assert not query_keys & set(zip(distractors.names(), distractors.idx))


# ---------------------------------------------------------------------------------- geometry


def test_jitter_overlap_matches_the_hpatches_levels():
    rng = np.random.default_rng(0)
    medians = {n: float(np.median(F.ellipse_overlap(F.sample_jitter(rng, 1500, F.JITTER[n])))) for n in "eht"}
    assert abs(medians["e"] - 0.85) < 0.03
    assert abs(medians["h"] - 0.72) < 0.03
    assert 0.5 < medians["t"] < medians["h"] - 0.05


def test_ellipse_overlap_known_values():
    identity = np.eye(3)[None]
    half_shift = np.eye(3)[None].copy()
    half_shift[0, 0, 2] = 1.0  # a full diameter: the discs only touch
    doubled = np.diag([2.0, 2.0, 1.0])[None]  # area ratio 4: IoU 1/4
    values = F.ellipse_overlap(np.concatenate([identity, half_shift, doubled]), grid=128)
    assert values[0] == pytest.approx(1.0)
    assert values[1] == pytest.approx(0.0, abs=0.01)
    assert values[2] == pytest.approx(0.25, abs=0.01)


def test_circle_iou_pairs_closed_form():
    c = np.zeros((3, 2))
    other = np.array([[0.0, 0.0], [0.0, 0.0], [2.0, 0.0]])
    iou = F.circle_iou_pairs(c, np.array([1.0, 1.0, 1.0]), other, np.array([1.0, 2.0, 1.0]))
    assert iou[0] == pytest.approx(1.0)
    assert iou[1] == pytest.approx(0.25)
    assert iou[2] == pytest.approx(0.0)


def test_detections_are_clustered_and_inside_the_image():
    gray = sources.load_gray(synth.VIEWPOINT_SOURCES[1])
    frames = F.detect_frames(gray, np.random.default_rng(0), min_size=1.8, nms_overlap=0.5, contrast_threshold=0.01)
    assert len(frames) > 300 and (frames[:, 2] >= 1.8).all()
    radii = frames[:, 2] / 2
    for i in range(0, len(frames), 37):  # no kept pair overlaps by more than 50 %
        iou = F.circle_iou_pairs(
            frames[i : i + 1, :2], radii[i : i + 1], np.delete(frames[:, :2], i, 0), np.delete(radii, i)
        )
        assert iou.max() <= 0.5
    again = F.detect_frames(gray, np.random.default_rng(0), min_size=1.8, nms_overlap=0.5, contrast_threshold=0.01)
    assert np.array_equal(frames, again)


def test_ref_patches_follow_the_harness_patch_convention(view_sequence):
    """The ref patch of a frame equals prepare.extract_patches at the same frame (no pyramid level)."""
    sequence, (reference, _) = view_sequence
    small = sequence.frames[:, 2] * 5.303 / 65 < 1.3  # read from pyramid level 0
    assert small.sum() > 20
    frames = sequence.frames[small]
    ours = sequence.patches["ref"][small].astype(np.float32)
    theirs = extract_patches(reference.astype(np.uint8), Frames(frames[:, :2], frames[:, 2], frames[:, 3]))[
        :, 0
    ].numpy()
    assert np.abs(ours - theirs).mean() < 1.0


def test_view_patches_correspond_under_the_homography(view_sequence):
    sequence, (reference, targets) = view_sequence
    base = F.frame_matrices(sequence.frames) @ F.PATCH_TO_UNIT
    ref = _normalised(sequence.patches["ref"])
    for k in (0, 4):
        target_levels = P.pyramid(targets[k])
        exact = P.sample_patches(target_levels, sequence.homographies[k] @ base)
        ignoring_h = P.sample_patches(target_levels, base)
        ncc_exact = np.median((_normalised(exact) * ref).sum(1))
        ncc_wrong = np.median((_normalised(ignoring_h) * ref).sum(1))
        assert ncc_exact > 0.9
        assert ncc_wrong < ncc_exact - 0.3
        easy = np.median((_normalised(sequence.patches[f"e{k + 1}"]) * ref).sum(1))
        assert 0.5 < easy < ncc_exact


def test_difficulty_grows_from_easy_to_tough(view_sequence, tiny):
    """Nearest-neighbour matching of normalised pixels gets worse from e to h to t, in both kinds."""

    def small(stack):  # 65 -> 16 px (area), a cheap blurred-pixel descriptor
        return _normalised(stack[:, :64, :64].reshape(len(stack), 16, 4, 16, 4).mean((2, 4)))

    def accuracy(patches, noise):
        ref = small(patches["ref"])
        hits = []
        for k in range(1, 6):
            scores = small(patches[f"{noise}{k}"]) @ ref.T
            hits.append(scores.argmax(1) == np.arange(len(ref)))
        return float(np.mean(hits))

    sequence, _ = view_sequence
    view = {n: accuracy(sequence.patches, n) for n in "eht"}
    assert view["e"] > view["h"] > view["t"]
    patch_set = synth.open_patch_set(tiny)
    illum = {n: np.mean([accuracy(patch_set.load(s), n) for s in ("i_coffee", "i_coins")]) for n in "eht"}
    assert illum["e"] > illum["h"] > illum["t"]
    # Mean absolute difference to the ref patch also grows with the jitter (v_: photometry is mild).
    ref = sequence.patches["ref"].astype(np.float64)
    mad = {n: np.mean([np.abs(sequence.patches[f"{n}{k}"] - ref).mean() for k in range(1, 6)]) for n in "eht"}
    assert mad["e"] < mad["h"] < mad["t"]


def test_illumination_targets_keep_the_geometry():
    source = synth.ILLUMINATION_SOURCES[1]
    sequence, (reference, targets) = synth.generate_sequence(source, synth.SynthParams(patches=30), with_images=True)
    assert np.allclose(sequence.homographies, np.eye(3))
    for target in targets:
        assert target.shape == reference.shape
        assert abs(np.corrcoef(target.ravel(), reference.ravel())[0, 1]) > 0.5
        assert np.abs(target - reference).mean() > 3  # a real photometric change


# ---------------------------------------------------------------------------------- ensure / atomicity


def test_ensure_reuses_a_complete_dataset_and_repairs_an_incomplete_one(tmp_path):
    root = synth.generate_tiny(tmp_path / "set", sequences=2, patches=20)
    stamp = (root / "params.json").stat().st_mtime_ns
    assert synth.generate_tiny(root, sequences=2, patches=20) == root
    assert (root / "params.json").stat().st_mtime_ns == stamp  # not regenerated
    before = (root / "v_astronaut" / "h2.png").read_bytes()
    (root / "v_astronaut" / "h2.png").unlink()
    synth.generate_tiny(root, sequences=2, patches=20)
    assert (root / "v_astronaut" / "h2.png").read_bytes() == before
    synth.generate_tiny(root, sequences=2, patches=25)  # other parameters: regenerated
    assert synth.open_patch_set(root).patch_count("i_coffee") == 25
    assert [p.name for p in tmp_path.iterdir()] == ["set"]  # no temporary folders left


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def failing(folder, sequence):
        calls.append(folder)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(folder, sequence)

    original = synth.write_sequence
    monkeypatch.setattr(synth, "write_sequence", failing)
    with pytest.raises(KeyboardInterrupt):
        synth.generate_tiny(tmp_path / "set", sequences=2, patches=10)
    assert list(tmp_path.iterdir()) == []


def test_leftovers_of_killed_runs_are_removed(tmp_path):
    stale = tmp_path / ".set.tmp-killed"
    fresh = tmp_path / ".set.tmp-running"  # maybe another process generating right now: kept
    replaced = tmp_path / ".set.old-1234"
    for folder in (stale, fresh, replaced):
        folder.mkdir()
    os.utime(stale, (0, 0))
    synth.generate_tiny(tmp_path / "set", sequences=2, patches=10)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".set.tmp-running", "set"]


def test_a_killed_generation_is_cleaned_by_the_next_open_even_when_complete(tmp_path):
    import subprocess
    import sys

    from desc_bench.io.atomic import _host

    root = synth.generate_tiny(tmp_path / "set", sequences=2, patches=10)
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True).stdout)
    killed = tmp_path / f".set.tmp-{dead}@{_host()}-0123abcd"  # what SIGKILL left a second ago
    (killed / "i_coffee").mkdir(parents=True)
    synth.generate_tiny(root, sequences=2, patches=10)  # complete: not regenerated, but cleaned
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]


def test_refuses_to_replace_a_foreign_folder(tmp_path):
    root = tmp_path / "hpatches-synth"
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="refusing to replace"):
        synth.generate_tiny(root, sequences=2, patches=10)
    assert (root / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "params, message",
    [
        (synth.SynthParams(sequences=3), "even number"),
        (synth.SynthParams(sequences=40), "even number"),
        (synth.SynthParams(sequences=2, patches=0), "at least 1"),
        (synth.SynthParams(sequences=2, patches=100_000), "fewer patches"),
    ],
)
def test_bad_parameters_raise_clear_errors(tmp_path, params, message):
    with pytest.raises(DatasetError, match=message):
        synth.ensure_hpatches_synth(tmp_path / "x", progress=False, params=params)
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------------------------- sources and registry


def test_every_source_loads_offline_from_scikit_image():
    for source in synth.ILLUMINATION_SOURCES + synth.VIEWPOINT_SOURCES:
        image = sources.load_gray(source)
        assert image.dtype == np.uint8 and image.ndim == 2 and min(image.shape) >= 170, source
    names = [s.sequence for s in synth.ILLUMINATION_SOURCES + synth.VIEWPOINT_SOURCES]
    assert len(set(names)) == len(names) == synth.MAX_SEQUENCES == 16


def test_registered_source_opens_and_generates_on_first_use(data_dir, monkeypatch):
    monkeypatch.setattr(
        synth, "DEFAULT_PARAMS", synth.SynthParams(sequences=2, patches=12, n_pairs=100, n_queries=5, n_distractors=5)
    )
    source_cls = DatasetSource._registry["hpatches-synth"]
    assert source_cls is synth.HPatchesSynth
    source = source_cls()
    assert source.embedded and source.kind == "patches" and source.availability(data_dir) is None
    patch_set = source.open(data_dir)
    assert patch_set.name == "hpatches-synth"
    assert patch_set.root == data_dir / "hpatches-synth" and patch_set.tasks_dir == patch_set.root / "tasks"
    assert patch_set.sequence_names() == ("i_coffee", "v_astronaut")
    assert patch_set.load("v_astronaut")["t5"].shape == (12, 65, 65)
    assert source.open(data_dir).version == patch_set.version
    assert registry.dataset("hpatches-synth").root == patch_set.root  # $DESC_BENCH_DATA (fixture)
    assert registry.download("hpatches-synth", progress=False) == patch_set.root
    assert registry.unavailable_message("hpatches-synth") is None


def test_every_default_sequence_has_enough_valid_frames(hpatches_synth_data):
    """The full default set (16 x 300, generated once per session) has margin: every source yields
    at least 1.2 x 300 frames valid in all images."""
    params = synth.DEFAULT_PARAMS
    assert params.sequences >= 16 and params.patches >= 300
    info = json.loads((hpatches_synth_data / "hpatches-synth" / "params.json").read_text())
    assert sorted(info["sequences"]) == sorted(s.sequence for s in params.sources())
    for name, seq in info["sequences"].items():
        assert seq["patches"] == params.patches and seq["valid_frames"] >= 1.2 * params.patches, name
