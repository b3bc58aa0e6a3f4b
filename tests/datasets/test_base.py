"""Patch files at their true bit depth, and splits files of the wrong shape (datasets/base.py)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from desc_bench.datasets.base import PatchSet, read_patch_file, read_splits
from desc_bench.errors import DatasetError

PATCHES = np.random.default_rng(0).integers(0, 256, (3 * 65, 65), dtype=np.uint8)


def _write(path, image):
    assert cv2.imwrite(str(path), image)
    return path


def test_8_bit_gray_is_read_as_stored(tmp_path):
    out = read_patch_file(_write(tmp_path / "ref.png", PATCHES))
    assert out.shape == (3, 65, 65) and out.dtype == np.uint8
    np.testing.assert_array_equal(out.reshape(-1, 65), PATCHES)


def test_16_bit_values_0_to_255_are_not_read_as_zeros(tmp_path):
    path = _write(tmp_path / "ref.png", PATCHES.astype(np.uint16))
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    np.testing.assert_array_equal(read_patch_file(path).reshape(-1, 65), PATCHES)


def test_16_bit_scaled_from_8_bit_maps_back_exactly(tmp_path):
    path = _write(tmp_path / "ref.png", PATCHES.astype(np.uint16) * 257)
    np.testing.assert_array_equal(read_patch_file(path).reshape(-1, 65), PATCHES)


def test_16_bit_values_that_do_not_map_are_refused_naming_the_file(tmp_path):
    image = PATCHES.astype(np.uint16) * 256 + 7
    path = _write(tmp_path / "e1.png", image)
    with pytest.raises(DatasetError, match=r"e1\.png.*16-bit.*0\.\.255"):
        read_patch_file(path)


def test_colour_and_transparency(tmp_path):
    gray3 = np.repeat(PATCHES[:, :, None], 3, axis=2)
    np.testing.assert_array_equal(read_patch_file(_write(tmp_path / "g.png", gray3)).reshape(-1, 65), PATCHES)
    colour = gray3.copy()
    colour[0, 0] = (1, 2, 3)
    with pytest.raises(DatasetError, match=r"c\.png is in colour"):
        read_patch_file(_write(tmp_path / "c.png", colour))
    alpha = np.dstack([gray3, np.full(PATCHES.shape, 255, np.uint8)])
    np.testing.assert_array_equal(read_patch_file(_write(tmp_path / "a.png", alpha)).reshape(-1, 65), PATCHES)
    alpha[5, 5, 3] = 0
    with pytest.raises(DatasetError, match=r"t\.png has transparent pixels"):
        read_patch_file(_write(tmp_path / "t.png", alpha))


def test_patch_count_reads_the_header(tmp_path):
    (tmp_path / "s").mkdir()
    _write(tmp_path / "s" / "ref.png", PATCHES)
    assert PatchSet("x", tmp_path, tmp_path, "v").patch_count("s") == 3


@pytest.mark.parametrize(
    "content, message",
    [
        ("[1, 2]", "must be a JSON object of splits"),
        ("{}", "must be a JSON object of splits"),
        ('{"a": ["v_x"]}', "split 'a' must be an object with a \"test\" list"),
        ('{"a": {"train": ["v_x"]}}', "split 'a' must be an object"),
        ('{"a": {"test": "v_x"}}', "split 'a' test must be a list of sequence names"),
        ('{"a": {"test": [1, 2]}}', "split 'a' test must be a list"),
        ('{"a": {"test": []}}', "split 'a' has no test sequences"),
        ('{"a": {"test": ["v_x"], "train": {"v_y": 1}}}', "split 'a' train must be a list"),
        ('{"a": ', "is not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, "splits file"),
    ],
)
def test_a_splits_file_of_the_wrong_shape_names_the_file(tmp_path, content, message):
    path = tmp_path / "tasks" / "splits" / "splits.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(DatasetError, match="splits file .*splits.json") as info:
        read_splits(path)
    assert message in str(info.value)


def test_the_official_shape_reads(tmp_path):
    path = tmp_path / "splits.json"
    path.write_text(json.dumps({"a": {"name": "a", "test": ["v_x"], "train": ["i_y"]}, "full": {"test": ["v_x"]}}))
    splits = read_splits(path)
    assert splits["a"].test == ("v_x",) and splits["a"].train == ("i_y",) and splits["full"].train == ()
