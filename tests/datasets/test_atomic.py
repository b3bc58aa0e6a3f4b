"""desc_bench.io.atomic.staged_folder and the SIGTERM helper: a folder appears complete or not at
all, staging folders never outlive their process (SIGINT, SIGTERM, SIGKILL), and generated
folders are readable by others (the umask's permissions, not mkdtemp's 0700)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from desc_bench.io.atomic import remove_stale_staging, scratch_folder, staged_folder, staging_folders

ROOT = Path(__file__).resolve().parents[2]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_success_renames_into_place_and_replaces_the_old_folder(tmp_path):
    target = tmp_path / "set"
    with staged_folder(target) as staging:
        assert staging.parent == tmp_path and staging.name.startswith(".set.tmp-")
        (staging / "a.txt").write_text("one")
    assert (target / "a.txt").read_text() == "one"
    with staged_folder(target) as staging:
        (staging / "b.txt").write_text("two")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]
    with pytest.raises(FileExistsError), staged_folder(target, overwrite=False) as staging:
        (staging / "c.txt").write_text("three")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt, SystemExit])
def test_failure_or_interruption_leaves_nothing(tmp_path, error):
    with pytest.raises(error), staged_folder(tmp_path / "set") as staging:
        (staging / "half.txt").write_text("half")
        raise error()
    assert list(tmp_path.iterdir()) == []


def test_refused_replacement_keeps_the_old_folder(tmp_path):
    target = tmp_path / "set"
    target.mkdir()
    (target / "mine.txt").write_text("mine")

    def refuse(path):
        raise PermissionError(f"not replacing {path}")

    with pytest.raises(PermissionError), staged_folder(target, before_replace=refuse) as staging:
        (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"] and (target / "mine.txt").exists()


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_folders_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        with staged_folder(tmp_path / "set") as staging:
            (staging / "sub").mkdir()
    finally:
        os.umask(old)
    assert _mode(tmp_path / "set") == 0o777 & ~umask
    assert _mode(tmp_path / "set" / "sub") == 0o777 & ~umask


def test_generated_datasets_are_readable_by_others(tiny_hpatches_factory, seq_synth_data):
    umask = os.umask(0o022)
    os.umask(umask)
    pairs = seq_synth_data / "hpatches-seq-synth"
    release = tiny_hpatches_factory() / "hpatches" / "hpatches-release"
    for folder in (pairs, pairs / "v_camera", release, release / "v_astronaut"):
        assert _mode(folder) == 0o777 & ~umask, folder  # not mkdtemp's 0700
    assert _mode(pairs / "v_camera" / "1.png") == 0o666 & ~umask
    assert _mode(release / "v_astronaut" / "ref.png") == 0o666 & ~umask


def test_stale_staging_is_removed_at_the_next_start(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    with staged_folder(tmp_path / "set") as live:  # this process is alive: its staging folder stays
        host = live.name.split("@", 1)[1].rsplit("-", 1)[0]
        killed = tmp_path / f".set.tmp-{dead_pid}@{host}-0123abcd"
        elsewhere = tmp_path / ".set.tmp-1@otherhost-0123abcd"  # another host: kept while recent
        abandoned = tmp_path / ".set.tmp-2@otherhost-4567abcd"
        replaced = tmp_path / ".set.old-99-aaaa"
        for folder in (killed, elsewhere, abandoned, replaced):
            folder.mkdir()
            (folder / "big.bin").write_bytes(b"x" * 1000)
        os.utime(abandoned, (0, 0))
        removed = remove_stale_staging(tmp_path / "set")
        assert sorted(p.name for p in removed) == sorted(p.name for p in (killed, abandoned, replaced))
        assert sorted(staging_folders(tmp_path / "set")) == sorted([live, elsewhere])
    assert sorted(p.name for p in tmp_path.iterdir()) == [elsewhere.name, "set"]


def test_scratch_folder_is_always_removed(tmp_path):
    with pytest.raises(RuntimeError), scratch_folder(tmp_path / "work") as scratch:
        (scratch / "x").write_text("x")
        raise RuntimeError
    with scratch_folder(tmp_path / "work") as scratch:
        (scratch / "y").write_text("y")
    assert list(tmp_path.iterdir()) == []


# The child loads desc_bench.io without the package __init__ (which imports torch: seconds).
_CHILD = textwrap.dedent(
    """
    import sys, time, types
    from pathlib import Path
    package = types.ModuleType("desc_bench")
    package.__path__ = [sys.argv[3]]
    sys.modules["desc_bench"] = package
    from desc_bench.io.atomic import staged_folder
    from desc_bench.io.interrupt import terminate_as_interrupt
    if sys.argv[2] == "handler":
        assert terminate_as_interrupt()
    with staged_folder(Path(sys.argv[1])) as staging:
        (staging / "part.bin").write_bytes(b"x" * 100000)
        print("ready", flush=True)
        time.sleep(60)
    """
)


def _start_child(target: Path, mode: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(target), mode, str(ROOT / "desc_bench")],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout.readline().strip() == "ready"
    return child


def test_sigterm_with_the_cli_handler_cleans_up_at_once(tmp_path):
    child = _start_child(tmp_path / "set", "handler")
    assert len(staging_folders(tmp_path / "set")) == 1
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=30) == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_without_a_handler_is_cleaned_at_the_next_start(tmp_path, sig):
    child = _start_child(tmp_path / "set", "none")
    child.send_signal(sig)
    child.wait(timeout=30)
    assert len(staging_folders(tmp_path / "set")) == 1  # left behind by the killed process
    deadline = time.time() + 5
    with staged_folder(tmp_path / "set") as staging:  # the next start removes it, no hour's wait
        (staging / "done").write_text("ok")
    assert time.time() < deadline
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]


def test_terminate_as_interrupt_is_main_thread_only_and_keeps_a_host_handler():
    import threading

    from desc_bench.io import interrupt

    previous = signal.getsignal(signal.SIGTERM)
    try:
        result = []
        thread = threading.Thread(target=lambda: result.append(interrupt.terminate_as_interrupt()))
        thread.start()
        thread.join()
        assert result == [False]
        custom = lambda *args: None  # noqa: E731
        signal.signal(signal.SIGTERM, custom)
        assert interrupt.terminate_as_interrupt() is False and signal.getsignal(signal.SIGTERM) is custom
    finally:
        signal.signal(signal.SIGTERM, previous)
