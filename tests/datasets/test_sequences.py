"""Image-pair datasets: loaders of the real sequences, the synthetic set, ER/ES variants, errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from desc_bench.datasets import sequences as S
from desc_bench.datasets.base import DatasetSource
from desc_bench.errors import DatasetError


@pytest.fixture(scope="module")
def synth(seq_synth_data):
    return S.SyntheticSequences().open(seq_synth_data), seq_synth_data


def _warp_agreement(image1, imagek, H):
    """Mean absolute gray difference between image k and image 1 warped by H, on covered pixels."""
    g1 = cv2.cvtColor(image1, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gk = cv2.cvtColor(imagek, cv2.COLOR_RGB2GRAY).astype(np.float32)
    size = (gk.shape[1], gk.shape[0])
    warped = cv2.warpPerspective(g1, H, size, flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.ones_like(g1), H, size, flags=cv2.INTER_NEAREST) > 0
    mask = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    return float(np.abs(warped - gk)[mask].mean()), float(mask.mean()), float(np.corrcoef(warped[mask], gk[mask])[0, 1])


def test_sources_registered_as_pairs():
    for name in (
        "hpatches-seq",
        "hpatches-seq-full",
        "oxford-affine",
        "hpatches-seq-synth",
        "hpatches-seq-synth-er",
        "hpatches-seq-synth-es",
        "hpatches-seq-er",
        "hpatches-seq-es",
    ):
        assert DatasetSource._registry[name].kind == "pairs", name
    assert S.SyntheticSequences.embedded


def test_synthetic_layout_and_exact_homographies(synth):
    pairset, root = synth
    assert pairset.names() == tuple(s.sequence for s in S.SYNTH_SOURCES)
    assert sum(s.kind == "i" for s in pairset.sequences) == 4 and sum(s.kind == "v" for s in pairset.sequences) == 4
    assert len(pairset.pairs()) == 40
    assert not [p for p in root.iterdir() if p.name.startswith(".")], "temporary folders left behind"
    assert (root / S.SYNTH_FOLDER / "VERSION").is_file()
    for seq in pairset.sequences:
        first = seq.image(1)
        assert first.shape == (360, 480, 3) and first.dtype == np.uint8
        for k in (2, 6):
            H = seq.homography(k)
            assert H.shape == (3, 3) and H.dtype == np.float64
            if seq.kind == "i":
                np.testing.assert_array_equal(H, np.eye(3))
            else:
                diff, covered, corr = _warp_agreement(first, seq.image(k), H)
                assert covered > 0.2 and corr > 0.9 and diff < 12, (seq.name, k, diff, corr)
                # the wrong direction must not agree: the check above can fail
                assert _warp_agreement(first, seq.image(k), np.linalg.inv(H))[2] < corr - 0.2


def test_synthetic_is_cached(synth):
    """Generated once: opening again rewrites nothing (determinism: test_synth_bytes.py pins the bytes)."""
    pairset, root = synth
    stamp = (root / S.SYNTH_FOLDER / "VERSION").stat().st_mtime_ns
    assert S.SyntheticSequences().open(root).version == pairset.version
    S.generate_synthetic(root)
    assert (root / S.SYNTH_FOLDER / "VERSION").stat().st_mtime_ns == stamp


@pytest.mark.parametrize("variant", ["er", "es"])
def test_transformed_variants_are_deterministic_and_consistent(synth, variant):
    pairset, _ = synth
    small = pairset.subset(["v_astronaut", "i_coffee", "v_camera"])
    one, two = S.transformed(small, variant), S.transformed(small, variant)
    other = S.transformed(small, variant, seed=1)
    assert one.name == f"{small.name}-{variant}"
    for a, b, c in zip(one.sequences, two.sequences, other.sequences):
        np.testing.assert_array_equal(np.stack(a.homographies), np.stack(b.homographies))
        assert not np.allclose(np.stack(a.homographies), np.stack(c.homographies))
        np.testing.assert_array_equal(a.image(4), b.image(4))
        np.testing.assert_array_equal(a.image(1), small.sequence(a.name).image(1))  # image 1 untouched
    seq = one.sequence("v_astronaut")
    base = small.sequence("v_astronaut")
    for k in (2, 5):
        T = seq.homography(k) @ np.linalg.inv(base.homography(k))
        T = T / T[2, 2]
        if variant == "er":
            angle = np.degrees(np.arctan2(T[1, 0], T[0, 0]))
            assert -90 <= angle <= 90 and np.isclose(np.linalg.det(T[:2, :2]), 1.0)
        else:
            scale = np.sqrt(np.linalg.det(T[:2, :2]))
            assert 2**-2 - 1e-9 <= min(scale, 1 / scale) <= 2**-1.5 + 1e-9
            assert np.isclose(T[0, 1], 0) and np.isclose(T[0, 0], T[1, 1])
        diff, covered, corr = _warp_agreement(seq.image(1), seq.image(k), seq.homography(k))
        assert corr > 0.85, (variant, k, corr)
    # the uncovered background is filled, not left black
    image = seq.image(3)
    covered = cv2.warpPerspective(np.ones(image.shape[:2], np.uint8), T, image.shape[1::-1]) > 0
    if (~covered).any():
        assert image[~covered].mean() > 5


def test_hpatches_sample_sequences(shared):
    root = shared / "data" / "hpatches-sequences-sample"
    pairset = S.open_hpatches_sequences(root, ["v_churchill", "v_wormhole"])
    churchill = pairset.sequence("v_churchill")
    assert churchill.kind == "v" and len(churchill.images) == 6 and len(churchill.homographies) == 5
    image = churchill.image(1)
    assert image.shape == (1024, 768, 3) and image.dtype == np.uint8
    assert pairset.sequence("v_wormhole").image(2).shape == (653, 986, 3)
    np.testing.assert_allclose(churchill.homography(3), np.loadtxt(root / "v_churchill" / "H_1_3"))
    for seq in pairset.sequences:
        small = [cv2.resize(seq.image(k), None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA) for k in (1, 2)]
        scale = np.diag([0.25, 0.25, 1.0])
        H = scale @ seq.homography(2) @ np.linalg.inv(scale)
        assert _warp_agreement(small[0], small[1], H)[2] > 0.4


def test_hpatches_sequence_without_homographies_names_the_file(shared):
    root = shared / "data" / "hpatches-sequences-sample"
    with pytest.raises(DatasetError, match=r"v_calder.*H_1_2"):
        S.open_hpatches_sequences(root, ["v_calder"])
    with pytest.raises(DatasetError, match=r"v_calder/2\.ppm"):
        S.load_hpatches_sequence(root / "v_calder")


def test_oxford_affine_all_sequences(shared):
    source = S.OxfordAffine()
    assert source.availability(shared / "data") is None
    pairset = source.open(shared / "data")
    assert pairset.names() == S.OXFORD_SEQUENCES
    sizes = {"graf": (640, 800), "boat": (680, 850), "bark": (512, 765), "wall": (700, 1000)}
    for seq in pairset.sequences:
        assert len(seq.homographies) == 5 and all(h.shape == (3, 3) for h in seq.homographies)
        if seq.name in sizes:
            assert seq.image(1).shape == sizes[seq.name] + (3,)
    np.testing.assert_allclose(pairset.sequence("ubc").homography(4), np.eye(3), atol=1e-6)
    graf = pairset.sequence("graf")
    small = [cv2.resize(graf.image(k), None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA) for k in (1, 2)]
    scale = np.diag([0.5, 0.5, 1.0])
    assert _warp_agreement(small[0], small[1], scale @ graf.homography(2) @ np.linalg.inv(scale))[2] > 0.5


def _fake_sequence(folder, missing=None):
    folder.mkdir(parents=True)
    for k in range(1, 7):
        cv2.imwrite(str(folder / f"{k}.png"), np.full((20, 30, 3), 10 * k, np.uint8))
    for k in range(2, 7):
        np.savetxt(folder / f"H_1_{k}", np.eye(3))
    if missing:
        (folder / missing).unlink()
    return folder


def test_missing_files_are_named(tmp_path):
    with pytest.raises(DatasetError, match=r"H_1_6"):
        S.load_hpatches_sequence(_fake_sequence(tmp_path / "v_a", "H_1_6"))
    with pytest.raises(DatasetError, match=r"v_b/4\.ppm"):
        S.load_hpatches_sequence(_fake_sequence(tmp_path / "v_b", "4.png"))
    seq = S.load_hpatches_sequence(_fake_sequence(tmp_path / "i_c"))
    assert seq.kind == "i" and seq.image(3).shape == (20, 30, 3)
    (tmp_path / "i_c" / "3.png").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match=r"i_c/3\.png"):
        seq.image(3)
    (tmp_path / "i_c" / "H_1_2").write_text("1 2 3\n")
    with pytest.raises(DatasetError, match=r"i_c/H_1_2"):
        S.load_hpatches_sequence(tmp_path / "i_c")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="hpatches-sequences-release"):
        S.HPatchesSequences().open(empty)
    assert "desc-bench data download hpatches-seq" in S.HPatchesSequences().availability(empty)
    assert "--data-dir" in S.HPatchesSequences().availability(empty)
    assert "oxford-affine" in S.OxfordAffine().availability(empty)


def test_mma_subset_excludes_the_eight_large_sequences(tmp_path):
    root = tmp_path / S.HPATCHES_FOLDER
    for name in ("i_dc", "i_ok", "v_talent", "v_ok"):
        _fake_sequence(root / name)
    assert S.HPatchesSequences().open(tmp_path).names() == ("i_ok", "v_ok")
    assert S.HPatchesSequencesFull().open(tmp_path).names() == ("i_dc", "i_ok", "v_ok", "v_talent")
    assert len(S.MMA_EXCLUDED) == 8


@pytest.mark.parametrize("variant", ["er", "es"])
def test_transformed_targets_follow_gifts_order(tmp_path, variant):
    """GIFT resizes the target to longest side 480 first, then rotates / scales it about the resized
    image's centre (w/2, h/2); H_1k becomes T @ diag(r, r, 1) @ H_1k."""
    rng = np.random.default_rng(5)
    root = tmp_path / "seqs"
    for name in ("v_a", "v_b"):
        (root / name).mkdir(parents=True)
        for k in range(1, 7):
            noise = rng.integers(0, 256, (75, 100, 3), dtype=np.uint8)
            image = cv2.resize(noise, (1000, 750), interpolation=cv2.INTER_CUBIC)
            cv2.imwrite(str(root / name / f"{k}.ppm"), image)
        for k in range(2, 7):
            np.savetxt(root / name / f"H_1_{k}", np.diag([1.0 + 0.01 * k, 1.0, 1.0]))
    base = S.open_hpatches_sequences(root, ["v_a", "v_b"])
    seq, plain = S.transformed(base, variant).sequence("v_a"), base.sequence("v_a")
    warp = seq.warps[2]  # image 3
    T, r = warp.matrix, 480 / 1000
    assert (warp.width, warp.height) == (480, 360) and seq.image_size(3) == (480, 360)
    np.testing.assert_allclose(seq.homography(3), T @ np.diag([r, r, 1.0]) @ plain.homography(3))
    centre = T @ np.array([240.0, 180.0, 1.0])
    if variant == "er":  # a rotation about (w/2, h/2)
        np.testing.assert_allclose(centre, [240.0, 180.0, 1.0], atol=1e-9)
        np.testing.assert_allclose(T[:2, :2] @ T[:2, :2].T, np.eye(2), atol=1e-12)
    else:  # a scaling about (w/2, h/2), then a shift within GIFT's offset ranges
        ratio = T[0, 0]
        assert np.isclose(T[1, 1], ratio) and T[0, 1] == T[1, 0] == 0
        assert (
            abs(centre[0] - 240) <= abs(ratio - 1) * 240 + 1e-9 and abs(centre[1] - 180) <= abs(ratio - 1) * 180 + 1e-9
        )
    resized = cv2.resize(plain.image(3), (480, 360), interpolation=cv2.INTER_LINEAR)
    expected = cv2.warpPerspective(resized, T, (480, 360), flags=cv2.INTER_LINEAR)
    covered = cv2.warpPerspective(np.ones((360, 480), np.uint8), T, (480, 360), flags=cv2.INTER_NEAREST) > 0
    found = seq.image(3)
    assert found.shape == (360, 480, 3)
    np.testing.assert_array_equal(found[covered], expected[covered])
    background = cv2.resize(base.sequence("v_b").image(1), (480, 360), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(found[~covered], background[~covered])
