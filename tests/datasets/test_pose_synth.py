"""pose-synth: the ground truth is right (epipolar constraint, and the rendered pixels of scene points
agree between the views), the generator is deterministic, and a damaged folder is a clear error."""

from __future__ import annotations

import json

import numpy as np
import pytest

from desc_bench.datasets.synth import pose as P
from desc_bench.errors import DatasetError


def skew(t):
    return np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])


def facet_points(facets, rng, per_facet=200):
    pts = []
    for f in facets:
        a = rng.uniform(-f.half[0], f.half[0], per_facet) * 0.9
        b = rng.uniform(-f.half[1], f.half[1], per_facet) * 0.9
        pts.append(f.centre + a[:, None] * f.u + b[:, None] * f.v)
    return np.concatenate(pts)


def project(K, X):
    x = X @ K.T
    return x[:, :2] / x[:, 2:]


@pytest.mark.parametrize("index", [0, 23])
def test_points_projected_with_the_true_poses_satisfy_the_epipolar_constraint(index):
    facets, R, t = P.scene(index)
    K = P.intrinsics()
    X0 = facet_points(facets, np.random.default_rng(index))
    X1 = X0 @ R.T + t
    assert (X0[:, 2] > 0).all() and (X1[:, 2] > 0).all()
    x0, x1 = project(K, X0), project(K, X1)
    n0 = np.c_[x0, np.ones(len(x0))] @ np.linalg.inv(K).T
    n1 = np.c_[x1, np.ones(len(x1))] @ np.linalg.inv(K).T
    E = skew(t / np.linalg.norm(t)) @ R
    assert np.abs(np.einsum("ij,jk,ik->i", n1, E, n0)).max() < 1e-6
    assert np.allclose(R @ R.T, np.eye(3), atol=1e-12) and np.linalg.det(R) == pytest.approx(1.0)
    # well conditioned: the points span a range of depths, not one plane
    assert X0[:, 2].max() - X0[:, 2].min() > 3.0


def test_rendered_views_agree_at_visible_scene_points():
    textures = P.load_textures()
    image0, image1, R, t = P.generate_pair(5, textures)
    facets, R2, t2 = P.scene(5)  # deterministic: the same scene and pose again
    assert np.array_equal(R, R2) and np.array_equal(t, t2)
    assert [f.centre.tolist() for f in facets] == [f.centre.tolist() for f in P.scene(5)[0]]
    K = P.intrinsics()
    # points on the nearest facets, strictly inside both images: same colour in both views where
    # the point is visible in both (most of them; occluded and texture-edge points differ)
    X0 = facet_points(facets[1:], np.random.default_rng(1))
    x0, x1 = project(K, X0), project(K, X0 @ R.T + t)
    w, h = P.SIZE
    ok = (x0 > 2).all(1) & (x1 > 2).all(1) & (x0[:, 0] < w - 3) & (x1[:, 0] < w - 3)
    ok &= (x0[:, 1] < h - 3) & (x1[:, 1] < h - 3)
    c0 = image0[np.round(x0[ok, 1]).astype(int), np.round(x0[ok, 0]).astype(int)].astype(float)
    c1 = image1[np.round(x1[ok, 1]).astype(int), np.round(x1[ok, 0]).astype(int)].astype(float)
    close = np.abs(c0 - c1).max(1) < 40
    assert close.mean() > 0.85
    # a wrong pose does not agree as well
    x1_wrong = project(K, X0 @ R.T + t + np.array([0.3, 0, 0]))
    ok2 = ok & (x1_wrong > 2).all(1) & (x1_wrong[:, 0] < w - 3) & (x1_wrong[:, 1] < h - 3)
    c1w = image1[np.round(x1_wrong[ok2, 1]).astype(int), np.round(x1_wrong[ok2, 0]).astype(int)].astype(float)
    c0w = image0[np.round(x0[ok2, 1]).astype(int), np.round(x0[ok2, 0]).astype(int)].astype(float)
    assert (np.abs(c0w - c1w).max(1) < 40).mean() < close.mean() - 0.3


def test_open_reads_the_folder_and_names_a_missing_file(tmp_path):
    root = tmp_path / "pose-synth"
    root.mkdir()
    with pytest.raises(DatasetError, match="pairs.json"):
        P.open_pose_folder(root)
    (root / "pairs.json").write_text(json.dumps({"pair_00": {"K0": [], "K1": [], "R": [], "t": []}}))
    with pytest.raises(DatasetError, match="0.png"):
        P.open_pose_folder(root)
    (root / "pairs.json").write_text("{not json")
    with pytest.raises(DatasetError, match="damaged"):
        P.open_pose_folder(root)
