"""Weight files: upstream formats, verification by git blob id, the cache, and safe loading.

Every checkpoint here is built by the test in the upstream format (keys and shapes as in
shared/weights/MANIFEST.md, seeded random values): no real weights exist on the development machines.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import desc_bench
from desc_bench.adapters import verification as V
from desc_bench.adapters import weights as W
from desc_bench.adapters.registry import descriptor_class
from desc_bench.cli import main
from desc_bench.errors import DescriptorUnavailableError, WeightsError
from desc_bench.io import paths

LEARNED = ("hardnet", "hardnet++", "hardnet-ps", "superpoint", "gift", "msnet-v0")


def random_state(expected: dict[str, tuple[int, ...]], seed: int = 0) -> collections.OrderedDict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = collections.OrderedDict()
    for key, shape in expected.items():
        if key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        elif key.endswith("running_mean"):
            state[key] = torch.randn(shape, generator=g) * 0.1
        elif len(shape) == 1:
            state[key] = torch.randn(shape, generator=g) * 0.1 + (1.0 if key.endswith("weight") else 0.0)
        else:
            fan_in = int(torch.tensor(shape[1:]).prod())
            state[key] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
    return state


def write_upstream(name: str, path: Path, seed: int = 0) -> Path:
    """Checkpoint built by the test in the upstream format of descriptor ``name``."""
    state = random_state(descriptor_class(name).expected_shapes(), seed)
    if name in ("hardnet", "hardnet++"):  # torch.save({'epoch': ..., 'state_dict': model.state_dict()})
        obj = {"epoch": 10, "state_dict": state}
    elif name in ("hardnet-ps", "superpoint"):  # a bare state dict
        obj = state
    elif name == "gift":  # {'extractor': ExtractorWrapper sd, 'embedder': EmbedderWrapper sd, 'step'}
        obj = {
            "extractor": collections.OrderedDict((k, v) for k, v in state.items() if k.startswith("extractor.")),
            "embedder": collections.OrderedDict((k, v) for k, v in state.items() if k.startswith("embedder.")),
            "step": 20001,
        }
    elif name == "msnet-v0":  # trainer checkpoint; DataParallel adds 'module.'; BN counters present
        model = collections.OrderedDict((f"module.{k}", v) for k, v in state.items())
        for key in [k for k in state if k.endswith("running_var")]:
            model[f"module.{key[: -len('running_var')]}num_batches_tracked"] = torch.tensor(7)
        obj = {"model": model, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3}]}, "iteration": 5}
    else:
        raise KeyError(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return path


def git_blob(path: Path) -> str:
    data = Path(path).read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def pin(monkeypatch, name: str, variant: str, path: Path, **changes) -> None:
    """Make the registered WeightFile of ``name``/``variant`` expect the git blob of ``path``."""
    cls = descriptor_class(name)
    table = dict(cls.weights)
    table[variant] = dataclasses.replace(table[variant], git_blob=git_blob(path), **changes)
    monkeypatch.setattr(cls, "weights", table)


# ------------------------------------------------------------------------------ upstream formats


def test_upstream_layouts_match_the_manifest():
    """Tensor counts and sizes of the architectures equal the MANIFEST's description of the files."""

    def count(name):
        shapes = descriptor_class(name).expected_shapes()
        return len(shapes), sum(int(torch.tensor(s).prod()) for s in shapes.values())

    assert count("hardnet") == (21, 1_335_712)
    assert count("hardnet++") == (21, 1_335_712)
    assert count("hardnet-ps")[0] == 38
    assert "features.18.weight" in descriptor_class("hardnet-ps").expected_shapes()
    assert count("superpoint") == (24, 1_300_865)
    gift = descriptor_class("gift").expected_shapes()
    size = lambda prefix: sum(int(torch.tensor(s).prod()) for k, s in gift.items() if k.startswith(prefix))
    assert size("extractor.") == 65_200 and size("embedder.") == 358_808
    assert "extractor.conv0.0.weight" in gift and "embedder.network1_embed1.0.weight" in gift
    msnet = descriptor_class("msnet-v0").expected_shapes()
    assert msnet["desc_extractor.backbone.model.0.weight"] == (64, 3, 7, 7)
    assert msnet["desc_extractor.backbone.model.5.0.downsample.0.weight"] == (128, 64, 1, 1)
    assert msnet["desc_extractor.regress.4.weight"] == (128, 128, 1, 1)


@pytest.mark.parametrize("name", LEARNED)
def test_upstream_format_loads(name, tmp_path):
    path = write_upstream(name, tmp_path / f"{name}.pth")
    expected = descriptor_class(name).expected_shapes()
    state = W.load_state_dict(path, expected)
    assert set(state) == set(expected)
    reference = random_state(expected)
    for key, value in state.items():
        assert tuple(value.shape) == expected[key]
        assert torch.equal(value, reference[key])


# ---------------------------------------------------------------------------------- refusals


def test_wrong_shapes_are_refused_with_the_expected_shape(tmp_path):
    expected = descriptor_class("hardnet").expected_shapes()
    state = random_state(expected)
    state["features.3.weight"] = torch.zeros(32, 32, 5, 5)
    del state["features.20.running_var"]
    state["features.99.weight"] = torch.zeros(1)
    torch.save({"state_dict": state}, tmp_path / "bad.pth")
    with pytest.raises(WeightsError) as err:
        W.load_state_dict(tmp_path / "bad.pth", expected)
    message = str(err.value)
    assert "features.3.weight has shape (32, 32, 5, 5), expected (32, 32, 3, 3)" in message
    assert "missing keys features.20.running_var" in message
    assert "unexpected keys features.99.weight" in message


def test_a_file_of_another_descriptor_is_refused(tmp_path):
    path = write_upstream("superpoint", tmp_path / "sp.pth")
    with pytest.raises(WeightsError, match="no state dict with the expected keys"):
        W.load_state_dict(path, descriptor_class("hardnet").expected_shapes())


class _Payload:
    """Unpickling this object would create a folder: a stand-in for arbitrary code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_code_in_a_pickle_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    state = random_state(descriptor_class("hardnet").expected_shapes())
    path = tmp_path / "evil.pth"
    torch.save({"epoch": 1, "state_dict": state, "hook": _Payload(marker)}, path)
    with pytest.raises(WeightsError, match="refused to load"):
        W.load_state_dict(path, descriptor_class("hardnet").expected_shapes())
    assert not marker.exists()


def test_garbage_file_is_refused(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsError):
        W.load_state_dict(path, descriptor_class("hardnet").expected_shapes())


def test_tampered_file_fails_verification_and_is_not_cached(data_dir, tmp_path, monkeypatch):
    good = write_upstream("hardnet", tmp_path / "ck.pth")
    pin(monkeypatch, "hardnet", "liberty-aug", good)
    tampered = tmp_path / "tampered.pth"
    tampered.write_bytes(good.read_bytes() + b"\0")
    with pytest.raises(WeightsError) as err:
        W.add_weights("hardnet", tampered)
    assert git_blob(good) in str(err.value) and git_blob(tampered) in str(err.value)
    assert not [p for p in (paths.cache_root() / "weights").rglob("*") if p.is_file()]
    assert descriptor_class("hardnet").availability().startswith("needs weights")


def test_real_upstream_ids_refuse_a_test_checkpoint(data_dir, tmp_path):
    path = write_upstream("hardnet", tmp_path / "ck.pth")
    with pytest.raises(WeightsError, match="c1b2a5f4e79a5f3e50ec9a1ac98a428965cef37b"):
        W.add_weights("hardnet", path)


# ------------------------------------------------------------------------- cache and CLI actions


def test_add_then_use_then_tamper(data_dir, tmp_path, monkeypatch):
    source = write_upstream("hardnet", tmp_path / "ck.pth")
    pin(monkeypatch, "hardnet", "liberty-aug", source)
    cls = descriptor_class("hardnet")
    assert "desc-bench weights fetch hardnet" in cls.availability()
    with pytest.raises(DescriptorUnavailableError, match="desc-bench weights fetch hardnet"):
        desc_bench.descriptor("hardnet")
    cached = W.add_weights("hardnet", source)
    assert cached.is_file() and str(cached).startswith(str(tmp_path / "cache"))
    assert cls.availability() is None
    assert W.resolve_weights(cls, None) == cached
    desc = desc_bench.descriptor("hardnet")
    assert desc.weights_label == "liberty-aug" and desc.notes == ""
    assert desc.weights_checksum == hashlib.sha256(source.read_bytes()).hexdigest()
    row = {(r.descriptor, r.variant): r for r in W.weights_table()}[("hardnet", "liberty-aug")]
    assert row.cached and row.default and row.path == str(cached)


def test_fetch_verifies_and_caches(data_dir, tmp_path, monkeypatch):
    source = write_upstream("superpoint", tmp_path / "superpoint_v1.pth")
    pin(monkeypatch, "superpoint", "v1", source, urls=(source.as_uri(),))
    path = W.fetch_weights("superpoint", progress=False)
    assert path.read_bytes() == source.read_bytes()
    assert descriptor_class("superpoint").availability() is None
    # a mirror serving a different file: refused, nothing left in the cache
    path.unlink()
    source.write_bytes(source.read_bytes() + b"x")
    with pytest.raises(WeightsError, match="does not verify"):
        W.fetch_weights("superpoint", progress=False)
    assert not path.exists()


def test_fetch_tries_the_next_mirror_when_one_does_not_verify(data_dir, tmp_path, monkeypatch):
    """A mirror answering with the wrong content (here an HTML page) is verified under a temporary name,
    deleted, and the next mirror is tried; only a verified file ever reaches the cache path."""
    good = write_upstream("superpoint", tmp_path / "good" / "superpoint_v1.pth")
    html = tmp_path / "html" / "superpoint_v1.pth"
    html.parent.mkdir()
    html.write_bytes(b"<!DOCTYPE html><html><body>rate limited</body></html>")
    missing = tmp_path / "missing" / "superpoint_v1.pth"
    pin(monkeypatch, "superpoint", "v1", good, urls=(missing.as_uri(), html.as_uri(), good.as_uri()))
    path = W.fetch_weights("superpoint", progress=False)
    assert path.read_bytes() == good.read_bytes()
    # no temporary file left behind, only the file and its verification record
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name, path.name + ".verified.json"]
    # every mirror failing: one error that names each mirror and what went wrong there
    V.forget(path)
    pin(monkeypatch, "superpoint", "v1", good, urls=(missing.as_uri(), html.as_uri()))
    with pytest.raises(WeightsError) as err:
        W.fetch_weights("superpoint", progress=False)
    message = str(err.value)
    assert missing.as_uri() in message and html.as_uri() in message and "does not verify" in message
    assert "import it with `desc-bench weights add superpoint PATH`" in message  # the way out is named
    assert not any(path.parent.iterdir())


def test_an_interrupted_fetch_leaves_nothing_usable_in_the_cache(data_dir, tmp_path, monkeypatch):
    """A download that was never verified (the process died) is not the cached file: resolve()
    does not load it, and the next fetch does not trust it."""
    good = write_upstream("superpoint", tmp_path / "superpoint_v1.pth")
    pin(monkeypatch, "superpoint", "v1", good, urls=(good.as_uri(),))
    cls = descriptor_class("superpoint")
    dest = W.cached_path("superpoint", "v1", cls.weights["v1"])
    dest.parent.mkdir(parents=True)
    W.download_path(dest).write_bytes(b"<html>half an answer</html>")
    assert cls.availability().startswith("needs weights")
    with pytest.raises(WeightsError):
        W.resolve(cls, None)
    assert W.fetch_weights("superpoint", progress=False).read_bytes() == good.read_bytes()
    assert not W.download_path(dest).exists()


def test_add_does_not_touch_a_resumable_download(data_dir, tmp_path, monkeypatch):
    source = write_upstream("hardnet", tmp_path / "ck.pth")
    pin(monkeypatch, "hardnet", "liberty-aug", source)
    weight = descriptor_class("hardnet").weights["liberty-aug"]
    dest = W.cached_path("hardnet", "liberty-aug", weight)
    dest.parent.mkdir(parents=True)
    resumable = [
        dest.with_name(dest.name + ".part"),
        W.download_path(dest).with_name(W.download_path(dest).name + ".part"),
    ]
    for part in resumable:
        part.write_bytes(b"first half of a download")
    assert W.add_weights("hardnet", source) == dest and dest.read_bytes() == source.read_bytes()
    assert all(part.read_bytes() == b"first half of a download" for part in resumable)
    expected = [dest.name, V.record_path(dest).name] + [p.name for p in resumable]
    assert sorted(p.name for p in dest.parent.iterdir()) == sorted(expected)


def test_num_batches_tracked_is_left_out_in_one_place():
    """Expected shapes never list the batch-norm counters (weights.state_shapes drops them)."""
    for name in LEARNED:
        assert not [k for k in descriptor_class(name).expected_shapes() if k.endswith("num_batches_tracked")]
    assert not hasattr(W.LearnedDescriptor, "weights_notes_random")


def test_unpublished_weights_say_how_to_add_them(data_dir):
    for name in ("gift", "msnet-v0"):
        message = descriptor_class(name).availability()
        assert f"desc-bench weights add {name} PATH" in message and "never published" in message
        with pytest.raises(WeightsError, match="no download address"):
            W.fetch_weights(name, progress=False)


def test_add_unpublished_weights_checks_structure(data_dir, tmp_path):
    good = write_upstream("msnet-v0", tmp_path / "msnet.pth")
    cached = W.add_weights("msnet-v0", good)
    assert descriptor_class("msnet-v0").availability() is None
    assert desc_bench.descriptor("msnet-v0").weights_path == cached
    wrong = write_upstream("gift", tmp_path / "gift.pth")
    with pytest.raises(WeightsError, match="expected keys"):
        W.add_weights("msnet-v0", wrong)


def test_weights_table_lists_every_variant_and_flags_hpatches(data_dir):
    rows = {(r.descriptor, r.variant): r for r in W.weights_table()}
    for variant in ("liberty-aug", "liberty", "notredame-aug", "yosemite-aug", "6brown"):
        assert ("hardnet", variant) in rows
    assert rows[("hardnet++", "brown+hpatches")].saw_hpatches
    assert not rows[("hardnet", "liberty-aug")].saw_hpatches
    assert rows[("hardnet-ps", "ps")].format == "state_dict"
    assert rows[("superpoint", "v1")].git_blob == "107a444ca318d487390137d619d49f2f0a3b1ad8"
    assert "non-commercial" in rows[("superpoint", "v1")].licence
    assert rows[("hardnet", "liberty")].command == "desc-bench weights fetch hardnet --variant liberty"
    assert not any(r.cached for r in rows.values())


def test_hpatches_trained_weights_are_flagged(data_dir, tmp_path, monkeypatch):
    source = write_upstream("hardnet++", tmp_path / "HardNet++.pth")
    pin(monkeypatch, "hardnet++", "brown+hpatches", source)
    W.add_weights("hardnet++", source)
    assert desc_bench.descriptor("hardnet++").notes == W.HPATCHES_NOTE


def test_superpoint_notice_is_printed(data_dir, tmp_path, monkeypatch, capsys):
    source = write_upstream("superpoint", tmp_path / "superpoint_v1.pth")
    pin(monkeypatch, "superpoint", "v1", source)
    monkeypatch.setattr(W, "_NOTICES_SHOWN", set())
    W.add_weights("superpoint", source)
    desc_bench.descriptor("superpoint")
    assert "non-commercial" in capsys.readouterr().err


def test_resolve_random_path_and_errors(data_dir, tmp_path):
    cls = descriptor_class("hardnet")
    assert W.resolve_weights(cls, "random") is None
    path = write_upstream("hardnet", tmp_path / "mine.pth")
    assert W.resolve_weights(cls, str(path)) == path
    with pytest.raises(WeightsError, match="neither a variant"):
        W.resolve_weights(cls, "no-such-thing")
    with pytest.raises(WeightsError, match="desc-bench weights fetch hardnet --variant notredame-aug"):
        W.resolve_weights(cls, "notredame-aug")


def test_user_file_and_random_weights(data_dir, tmp_path):
    path = write_upstream("hardnet", tmp_path / "mine.pth")
    desc = desc_bench.descriptor("hardnet", weights=str(path))
    assert desc.weights_label == "file:mine.pth" and desc.notes == ""
    a = desc_bench.descriptor("hardnet", weights="random")
    b = desc_bench.descriptor("hardnet", weights="random")
    assert a.notes == W.RANDOM_NOTE and a.random_weights and a.weights_label == "random"
    patches = torch.rand(4, 1, 65, 65) * 255
    assert torch.equal(a.compute_patches(patches), b.compute_patches(patches))
    bad = tmp_path / "bad.pth"
    torch.save({"state_dict": {"features.0.weight": torch.zeros(1)}}, bad)
    with pytest.raises(WeightsError, match="hardnet: .*features.0.weight has shape"):
        desc_bench.descriptor("hardnet", weights=str(bad))


# ------------------------------------------------------- verified before every use (issue 12, 2 and 15)


def _replace(path: Path, other: Path) -> None:
    """Put ``other``'s bytes at ``path`` the way a user would (a new file moved over the old one)."""
    tmp = path.with_name("incoming.tmp")
    tmp.write_bytes(other.read_bytes())
    os.replace(tmp, path)


def test_a_different_checkpoint_at_the_cache_path_is_refused(data_dir, tmp_path, monkeypatch):
    """The right keys and shapes are not enough: a cached file is verified again before use, so another
    checkpoint placed at the cache path never gives rows labelled as the official variant."""
    source = write_upstream("hardnet", tmp_path / "a" / "ck.pth")
    pin(monkeypatch, "hardnet", "liberty-aug", source)
    cached = W.add_weights("hardnet", source)
    assert desc_bench.descriptor("hardnet").weights_label == "liberty-aug"
    _replace(cached, write_upstream("hardnet", tmp_path / "b" / "ck.pth", seed=1))
    assert cached.stat().st_size == source.stat().st_size  # same layout, same size: only the content differs
    fix = "run `desc-bench weights fetch hardnet` to download it again, or `desc-bench weights add hardnet PATH`"
    cls = descriptor_class("hardnet")
    assert "does not verify" in cls.availability() and fix in cls.availability()
    with pytest.raises(DescriptorUnavailableError, match="does not verify"):
        desc_bench.descriptor("hardnet")
    with pytest.raises(WeightsError, match=r"does not verify.*Refusing to use it: run `desc-bench weights fetch"):
        desc_bench.descriptor("hardnet", weights="liberty-aug")
    row = {(r.descriptor, r.variant): r for r in W.weights_table()}[("hardnet", "liberty-aug")]
    assert not row.cached and row.damaged
    listing = CliRunner().invoke(main, ["weights", "list"], catch_exceptions=False).output
    assert "cached copy does not verify: desc-bench weights fetch hardnet " in listing
    # written in place with the old mtime put back: ctime and the hash still catch it
    W.add_weights("hardnet", source)
    before = cached.stat()
    time.sleep(0.05)  # past the file system clock's tick, so that ctime moves
    cached.write_bytes(write_upstream("hardnet", tmp_path / "c" / "ck.pth", seed=2).read_bytes())
    os.utime(cached, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (cached.stat().st_size, cached.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    with pytest.raises(DescriptorUnavailableError, match="does not verify"):
        desc_bench.descriptor("hardnet")
    # the fix the message gives works
    W.add_weights("hardnet", source)
    assert desc_bench.descriptor("hardnet").weights_checksum == hashlib.sha256(source.read_bytes()).hexdigest()


def test_the_record_spares_the_rehash_until_the_file_changes(data_dir, tmp_path, monkeypatch):
    source = write_upstream("hardnet", tmp_path / "ck.pth")
    pin(monkeypatch, "hardnet", "liberty-aug", source)
    cached = W.add_weights("hardnet", source)
    hashed = []
    real = V.sha256_of
    monkeypatch.setattr(V, "sha256_of", lambda path: hashed.append(Path(path)) or real(path))
    cls = descriptor_class("hardnet")
    assert W.resolve(cls, None).sha256 == real(source) and hashed == []
    desc_bench.descriptor("hardnet")
    assert hashed == []  # recorded size, times and inode unchanged: no rehash
    os.utime(cached, ns=(cached.stat().st_atime_ns, cached.stat().st_mtime_ns + 1_000_000))
    assert W.resolve(cls, None).sha256 == real(source) and hashed == [cached]  # touched: hashed again
    W.resolve(cls, None)
    assert hashed == [cached]  # and recorded again
    V.record_path(cached).write_text("{not json")
    assert W.resolve(cls, None).sha256 == real(source) and len(hashed) == 2  # a damaged record is a rehash
    # a record made against other pins (an upgrade pinned another file) is not trusted
    pin(monkeypatch, "hardnet", "liberty-aug", write_upstream("hardnet", tmp_path / "new.pth", seed=5))
    with pytest.raises(WeightsError, match="does not verify"):
        W.resolve(descriptor_class("hardnet"), None)


def test_unpublished_weights_are_checked_against_the_digest_recorded_by_add(data_dir, tmp_path):
    source = write_upstream("msnet-v0", tmp_path / "msnet.pth")
    cached = W.add_weights("msnet-v0", source)
    assert json.loads(V.record_path(cached).read_text())["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert desc_bench.descriptor("msnet-v0").weights_path == cached
    _replace(cached, write_upstream("msnet-v0", tmp_path / "other.pth", seed=1))
    with pytest.raises(DescriptorUnavailableError, match=r"changed since it was added.*weights add msnet-v0 PATH"):
        desc_bench.descriptor("msnet-v0")
    V.record_path(cached).unlink()
    with pytest.raises(WeightsError, match=r"has no record of the file that was added.*weights add msnet-v0 PATH"):
        W.resolve(descriptor_class("msnet-v0"), None)


def test_add_refuses_non_finite_and_non_float_tensors(data_dir, tmp_path, monkeypatch):
    expected = descriptor_class("hardnet").expected_shapes()
    state = random_state(expected)
    state["features.0.weight"][0, 0, 0, 0] = float("nan")
    state["features.3.weight"][1, 1, 1, 1] = float("inf")
    state["features.1.running_mean"] = torch.zeros(32, dtype=torch.int64)
    bad = tmp_path / "bad.pth"
    torch.save({"state_dict": state}, bad)
    pin(monkeypatch, "hardnet", "liberty-aug", bad)  # the checksum matches: the content is what is wrong
    with pytest.raises(WeightsError) as err:
        W.add_weights("hardnet", bad)
    message = str(err.value)
    assert "features.0.weight has 1 NaN or infinite values of 288" in message
    assert "features.3.weight has 1 NaN or infinite values" in message
    assert "features.1.running_mean holds int64 values, expected floating point" in message
    assert descriptor_class("hardnet").availability().startswith("needs weights")  # nothing was cached
    with pytest.raises(WeightsError, match="NaN or infinite"):
        desc_bench.descriptor("hardnet", weights=str(bad))  # a user's own file gets the same checks
    # float64 is a float: accepted and computed in float32
    wide = tmp_path / "wide.pth"
    torch.save({"state_dict": {k: v.double() for k, v in random_state(expected).items()}}, wide)
    loaded = W.load_state_dict(wide, expected)
    assert all(v.dtype == torch.float32 for v in loaded.values())


def test_a_failed_fetch_of_a_variant_names_its_add_command(data_dir, tmp_path, monkeypatch):
    good = write_upstream("hardnet", tmp_path / "checkpoint_notredame_with_aug.pth")
    missing = tmp_path / "gone" / "checkpoint_notredame_with_aug.pth"
    pin(monkeypatch, "hardnet", "notredame-aug", good, urls=(missing.as_uri(),))
    with pytest.raises(WeightsError, match=r"`desc-bench weights add hardnet PATH --variant notredame-aug`"):
        W.fetch_weights("hardnet", "notredame-aug", progress=False)
