"""hpatches-synth generates its sequences on several threads: the bytes must not depend on it."""

from __future__ import annotations

import hashlib

from desc_bench.datasets.synth import hpatches_synth


def _digest(root) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_threaded_generation_writes_the_same_bytes_as_serial(tiny_hpatches_factory, tmp_path, monkeypatch):
    threaded = tiny_hpatches_factory() / "hpatches"  # 4 x 40, made by the default (threaded) generator
    assert hpatches_synth.GENERATION_THREADS > 1
    monkeypatch.setattr(hpatches_synth, "GENERATION_THREADS", 1)
    serial = hpatches_synth.generate_tiny(tmp_path / "serial")
    files = _digest(serial)
    assert len([f for f in files if f.endswith(".png")]) == 4 * 16
    tasks = {name: digest for name, digest in files.items() if name.startswith("tasks")}
    assert tasks and {k: v for k, v in files.items() if k not in tasks} == _digest(threaded / "hpatches-release")
    assert tasks == {f"tasks/{name}": digest for name, digest in _digest(threaded / "tasks").items()}
