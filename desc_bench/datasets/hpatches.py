"""The real HPatches patch benchmark (Balntas, Lenc, Vedaldi, Mikolajczyk, CVPR 2017).

Layout under the data root (``--data-dir``, ``$DESC_BENCH_DATA``, default ``~/.cache/desc-bench/data``)::

    hpatches/hpatches-release/<seq>/{ref,e1..e5,h1..h5,t1..t5}.png   116 sequences (57 i_*, 59 v_*);
                                each file a 65 px wide gray PNG of N stacked 65x65 patches, the same
                                N and patch order in all 16 files of a sequence
    hpatches/tasks/splits/splits.json                                splits a, b, c, illum, view, full
    hpatches/tasks/{retr_queries,retr_distractors,verif_pos,verif_neg_intra,verif_neg_inter}_split-<s>.csv
    hpatches/MANIFEST.json       what was downloaded (URL, size, sha256, md5) and when
    hpatches/tasks/SOURCES.json  per task file: downloaded (URL, sha256) or regenerated

An existing ``<data root>/hpatches-release`` (the hpatches-benchmark ``data/`` layout) is used too.

``desc-bench data download hpatches`` fetches the official archive (``hpatches-release.tar.gz``,
about 4.2 GB; the md5 below is the one published alongside the URL by several public loaders; no
sha256 is published, so the sha256 of what was downloaded is recorded in MANIFEST.json), checks the
release structure, and fetches the task files from hpatches/hpatches-benchmark at commit
``e0c993c7``; files that cannot be fetched are regenerated with the official deterministic
algorithm (:func:`desc_bench.datasets.tasks.generate_task_files`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import DatasetError, DownloadError
from ..io.atomic import scratch_folder, write_json
from ..io.download import Archive, ExtractLimits, fetch, fetch_archive, read_source_record, sha256_file
from .base import PATCH, PATCH_TYPES, DatasetSource, PatchSet, png_size, read_patch_file, read_splits

VERSION = "hpatches-release-v1"  # the 2017 release; part of descriptor cache keys
RELEASE = "hpatches-release"
SPLIT_NAMES = ("a", "b", "c", "full", "illum", "view")
TASK_KINDS = ("retr_queries", "retr_distractors", "verif_pos", "verif_neg_intra", "verif_neg_inter")
SPLITS_FILE = "splits/splits.json"

TASKS_COMMIT = "e0c993c7756d26129fef47f752f79e4cfe6681aa"
TASKS_BASE_URL = f"https://raw.githubusercontent.com/hpatches/hpatches-benchmark/{TASKS_COMMIT}/tasks/"


_RELEASE_LIMITS = ExtractLimits(max_entries=3_000, max_member_bytes=256 << 20, max_total_bytes=12 << 30, max_ratio=20.0)
ARCHIVE_MIRRORS: tuple[Archive, ...] = (
    # hpatches-benchmark download.sh and the hpatches-dataset README (the host serves plain http
    # only); md5 as published next to this URL by public loaders (e.g. pytorch HPatches dataset classes)
    Archive(
        urls=("http://icvl.ee.ic.ac.uk/vbalnt/hpatches/hpatches-release.tar.gz",),
        filename="hpatches-release.tar.gz",
        md5="0ab830d37fceb2b4c86cb1cc6cc79a61",
        max_bytes=6 << 30,
        checksum_source="md5 published beside the URL by public loaders",
        limits=_RELEASE_LIMITS,
    ),
    # the authors' Hugging Face mirror (same account as hpatches-sequences-release.zip); checksum
    # not published: the structure is verified after extraction and the sha256 recorded
    Archive(
        urls=("https://huggingface.co/datasets/vbalnt/hpatches/resolve/main/hpatches-release.zip",),
        filename="hpatches-release.zip",
        max_bytes=6 << 30,
        checksum_source="none published: size bound and structure check",
        limits=_RELEASE_LIMITS,
    ),
)

# sha256 of the task files at TASKS_COMMIT that are known (byte copies of the upstream blobs); the
# verification pair files have no recorded checksum: their sha256 goes into SOURCES.json
TASK_SHA256: dict[str, str] = {
    "retr_distractors_split-a.csv": "e4d0a3154d170b8d54aec05c0296cc289b042a8addf5b36351cf2c56602fbc85",
    "retr_distractors_split-b.csv": "0cfc0e1b075ee97dad845aba66215eabc02aa37bc2540d66049355c471e54e8f",
    "retr_distractors_split-c.csv": "7876980a1ab106b3deebef2a2966df4b5921d31bc09df54aeb82c03544257735",
    "retr_distractors_split-full.csv": "a913f9196185dac05555686fd22fad19048c56920bf5cbd81688fa41770dc6e2",
    "retr_distractors_split-illum.csv": "ec9ea07576660a449f9ba4bd564fa53b906c36e3603896382ca320f43324def3",
    "retr_distractors_split-view.csv": "5d92e43fda28f4f3d0c18b59414fb907d704f397579eac73079ee910aaab8d2f",
    "retr_queries_split-a.csv": "9a1cc25469f672da4a642b02360dc563a2c8af8080ec9841376c6843e8f7ea3a",
    "retr_queries_split-b.csv": "1bb0554498cfdbce6e16afa2aec4b9527c0387c9df2e36ca68eef0a1e9a566f3",
    "retr_queries_split-c.csv": "1ac37b424fe69b4d3140e46672d336e1dbf99a8c9aab35a3724ee53f9d173791",
    "retr_queries_split-full.csv": "d34f4ee6530f791b796a9a2d78b0153e4a8d31ce0ecd3263686b0411e265c072",
    "retr_queries_split-illum.csv": "a3294d801eefa0579eb543a379343ca772dca71498db768173806e32b5bfc6dc",
    "retr_queries_split-view.csv": "9f22b14c47a177de13fece48c7aa58527a84a8459964d94cd35a3ab41509adee",
    SPLITS_FILE: "75d4272eb8872f5444d34c00b4111f317432b5fe7550e74749cb1354d972fa83",
}

_LFS_POINTER = b"version https://git-lfs"


def task_file_names(split_names=SPLIT_NAMES) -> tuple[str, ...]:
    """Task CSV names (relative to the tasks folder) for the given splits."""
    return tuple(f"{kind}_split-{s}.csv" for s in split_names for kind in TASK_KINDS)


def missing_task_files(tasks_dir: Path, split_names=SPLIT_NAMES) -> tuple[str, ...]:
    """Task files (splits.json and the CSVs of ``split_names``) not present under ``tasks_dir``."""
    names = (SPLITS_FILE,) + task_file_names(split_names)
    return tuple(name for name in names if not (tasks_dir / name).is_file())


# ------------------------------------------------------------------------------------ the release


def check_sequence(folder: Path) -> int:
    """Check a release sequence folder from the PNG headers; return its patch count.

    Raises DatasetError naming the file: a missing type file, a width other than 65, a height that
    is not a multiple of 65, or different patch counts across the 16 files.
    """
    counts = {}
    for patch_type in PATCH_TYPES:
        path = folder / f"{patch_type}.png"
        if not path.is_file():
            raise DatasetError(f"missing patch file {path} (every sequence needs {', '.join(PATCH_TYPES)})")
        width, height = png_size(path)
        if width != PATCH or height == 0 or height % PATCH:
            raise DatasetError(
                f"malformed patch file {path}: expected width {PATCH} and a height that is a "
                f"multiple of {PATCH}, found {width}x{height}"
            )
        counts[patch_type] = height // PATCH
    if len(set(counts.values())) != 1:
        bad = "; ".join(f"{folder / (t + '.png')} has {n}" for t, n in counts.items() if n != counts["ref"])
        raise DatasetError(
            f"sequence {folder.name}: every patch file must hold as many patches as ref.png ({counts['ref']}); {bad}"
        )
    return counts["ref"]


def sequence_folders(release: Path) -> tuple[Path, ...]:
    """Sequence folders of a release (folders with a ref.png), sorted by name."""
    if not release.is_dir():
        return ()
    return tuple(
        sorted(p for p in release.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / "ref.png").exists())
    )


def check_release(release: Path) -> dict[str, int]:
    """Check every sequence of a release (headers only, fast); return sequence -> patch count."""
    folders = sequence_folders(release)
    if not folders:
        raise DatasetError(f"{release} holds no HPatches sequence folders (<seq>/ref.png, e1.png, ...)")
    return {folder.name: check_sequence(folder) for folder in folders}


def _find_release(extracted: Path) -> Path:
    """The folder of an extracted archive that holds the sequence folders."""
    named = extracted / RELEASE
    if sequence_folders(named):
        return named
    if sequence_folders(extracted):
        return extracted
    candidates = [p for p in extracted.rglob("ref.png")]
    roots = {p.parent.parent for p in candidates}
    if len(roots) == 1:
        return roots.pop()
    raise DatasetError(
        f"the downloaded archive does not have the hpatches-release layout "
        f"(<seq>/ref.png, e1.png, ...): found {len(candidates)} ref.png files in "
        f"{len(roots)} folders"
    )


# ---------------------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class TaskFile:
    """Where one task file came from."""

    name: str  # relative to the tasks folder
    origin: str  # "downloaded", "regenerated" or "present"
    detail: str = ""  # URL and sha256, or why it was regenerated


def _is_lfs_pointer(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(_LFS_POINTER)) == _LFS_POINTER


def _fetch_task(name: str, tasks_dir: Path, base_url: str, progress: bool) -> TaskFile:
    url = base_url + name
    dest = fetch(url, tasks_dir / name, sha256=TASK_SHA256.get(name), progress=progress)
    if _is_lfs_pointer(dest):
        dest.unlink()
        raise DownloadError(f"{url} is a git-lfs pointer, not the file")
    return TaskFile(name, "downloaded", f"{url} sha256 {sha256_file(dest)}")


def _regenerate(names: list[str], tasks_dir: Path, release: Path, progress: bool, reasons: dict[str, str]):
    try:
        from . import tasks as generator
    except ImportError as exc:
        raise DatasetError(
            f"task files {', '.join(names)} could not be downloaded and the generator "
            f"desc_bench.datasets.tasks cannot be imported ({exc})"
        ) from None
    splits = read_splits(tasks_dir / SPLITS_FILE)
    needed = [s for s in splits if any(n.endswith(f"_split-{s}.csv") for n in names)]
    sequences = sorted({seq for s in needed for seq in splits[s].test})
    missing = [seq for seq in sequences if not (release / seq).is_dir()]
    if missing:
        raise DatasetError(
            f"cannot regenerate task files: sequences {', '.join(missing)} of splits "
            f"{', '.join(needed)} are missing from {release}"
        )
    counts = check_release(release)  # every sequence (headers only): the generator takes what it needs
    with scratch_folder(tasks_dir.parent / ".tasks-generating") as staging:
        kinds = tuple(
            k
            for k, prefix in (("verification", "verif_"), ("retrieval", "retr_"))
            if any(n.startswith(prefix) for n in names)
        )
        options = {"kinds": kinds}
        if "retrieval" in kinds and hasattr(generator, "std_filter"):
            # the official candidate filter (ref patch std > 10) needs the patches
            options["patch_filter"] = generator.std_filter(lambda seq: read_patch_file(release / seq / "ref.png"))
        generator.generate_task_files(staging, splits, counts, split_names=needed, progress=progress, **options)
        files = []
        for name in names:
            made = staging / name
            if not made.is_file():
                raise DatasetError(f"the task generator did not write {name}")
            (tasks_dir / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(made, tasks_dir / name)
            files.append(
                TaskFile(name, "regenerated", f"official algorithm (seed 42); download failed: {reasons.get(name, '')}")
            )
        return files


def download_tasks(
    tasks_dir: Path,
    release: Path,
    *,
    progress: bool = True,
    split_names=None,
    base_url: str | None = None,
    regenerate: bool = True,
) -> tuple[TaskFile, ...]:
    """Fetch missing task files from hpatches-benchmark@e0c993c7; regenerate those that fail.

    splits.json must be downloadable (it defines the splits); ``split_names`` defaults to every
    split it defines. Already present files are kept. Writes ``tasks_dir/SOURCES.json`` and returns
    where each file came from.
    """
    base_url = TASKS_BASE_URL if base_url is None else base_url
    tasks_dir.mkdir(parents=True, exist_ok=True)
    sources_path = tasks_dir / "SOURCES.json"
    recorded = json.loads(sources_path.read_text()) if sources_path.is_file() else {}
    files: list[TaskFile] = []
    if not (tasks_dir / SPLITS_FILE).is_file():
        try:
            files.append(_fetch_task(SPLITS_FILE, tasks_dir, base_url, progress))
        except DownloadError as exc:
            raise DatasetError(f"cannot get the HPatches splits file: {exc}") from None
    if split_names is None:
        split_names = tuple(read_splits(tasks_dir / SPLITS_FILE))
    reasons: dict[str, str] = {}
    for name in task_file_names(split_names):
        if (tasks_dir / name).is_file():
            continue
        try:
            files.append(_fetch_task(name, tasks_dir, base_url, progress))
        except DownloadError as exc:
            reasons[name] = str(exc)
    if reasons:
        if not regenerate:
            raise DatasetError("cannot download task files: " + "; ".join(reasons.values()))
        files.extend(_regenerate(sorted(reasons), tasks_dir, release, progress, reasons))
    for item in files:
        recorded[item.name] = asdict(item)
    write_json(sources_path, recorded)
    present = [
        TaskFile(n, "present")
        for n in (SPLITS_FILE,) + task_file_names(split_names)
        if n not in {f.name for f in files}
    ]
    return tuple(files) + tuple(present)


# --------------------------------------------------------------------------------------- source


def download_release(folder: Path, *, progress: bool = True) -> Path:
    """Download, verify, safely extract and check the patch release into ``folder/hpatches-release``.

    Writes ``folder/MANIFEST.json`` (address, size, sha256, md5, how it was verified, counts).
    """
    release = folder / RELEASE
    if sequence_folders(release):
        check_release(release)
        return release
    folder.mkdir(parents=True, exist_ok=True)

    def check(extracted: Path) -> Path:
        found = _find_release(extracted)
        check_release(found)
        return found

    try:
        fetch_archive(ARCHIVE_MIRRORS, folder, release, check=check, progress=progress)
    except DownloadError as exc:
        raise DownloadError(
            f"cannot download the HPatches release: {exc}\nDownload it by hand, extract it so that "
            f"{release}/<seq>/ref.png exists, or use the embedded `hpatches-synth` dataset"
        ) from None
    counts = check_release(release)
    source = read_source_record(release) or {}
    write_json(
        folder / "MANIFEST.json",
        {
            "dataset": "hpatches",
            "version": VERSION,
            "url": source.get("urls", [""])[0],
            "file": source.get("file"),
            "size": source.get("size"),
            "sha256": source.get("sha256"),
            "md5": source.get("md5"),
            "verified": source.get("verified_by"),
            "sequences": len(counts),
            "patches": sum(counts.values()),
            "downloaded": source.get("downloaded"),
        },
    )
    return release


class HPatches(DatasetSource):
    """HPatches patches: 116 sequences, 16 patch files each, with the official task files."""

    name = "hpatches"
    kind = "patches"
    default_protocol = "python"
    summary = "HPatches patch benchmark (Balntas et al. CVPR 2017): 116 sequences, official tasks"
    version = VERSION

    @staticmethod
    def folder(data_dir: Path) -> Path:
        return Path(data_dir) / "hpatches"

    @classmethod
    def release_dir(cls, data_dir: Path) -> Path:
        default = cls.folder(data_dir) / RELEASE
        benchmark_layout = Path(data_dir) / RELEASE  # hpatches-benchmark's data/ folder
        if not sequence_folders(default) and sequence_folders(benchmark_layout):
            return benchmark_layout
        return default

    @classmethod
    def tasks_dir(cls, data_dir: Path) -> Path:
        return cls.folder(data_dir) / "tasks"

    def availability(self, data_dir: Path) -> str | None:
        release, tasks = self.release_dir(data_dir), self.tasks_dir(data_dir)
        fix = (
            "run `desc-bench data download hpatches` (about 4.2 GB), or pass --data-dir / set "
            "DESC_BENCH_DATA to the folder that holds hpatches/hpatches-release, or use the embedded "
            "`hpatches-synth` dataset, which needs no download"
        )
        if not sequence_folders(release):
            return f"the patch release is missing (no {release}/<seq>/ref.png); {fix}"
        if not (tasks / SPLITS_FILE).is_file():
            return (
                f"the task files are missing (no {tasks / SPLITS_FILE}); run `desc-bench data download "
                "hpatches` (it fetches only what is missing)"
            )
        return None

    def open(self, data_dir: Path, progress: bool = True) -> PatchSet:
        problem = self.availability(data_dir)
        if problem is not None:
            raise DatasetError(f"dataset 'hpatches' is not available in {data_dir}: {problem}")
        return PatchSet(
            name=self.name, root=self.release_dir(data_dir), tasks_dir=self.tasks_dir(data_dir), version=VERSION
        )

    def download(self, data_dir: Path, progress: bool = True) -> Path:
        """Fetch the release archive and the task files (regenerating task files that are unavailable)."""
        folder = self.folder(data_dir)
        release = self.release_dir(data_dir)
        if not sequence_folders(release):
            release = download_release(folder, progress=progress)
        download_tasks(self.tasks_dir(data_dir), release, progress=progress)
        splits = read_splits(self.tasks_dir(data_dir) / SPLITS_FILE)
        missing = sorted(
            {seq for split in splits.values() for seq in split.test + split.train}
            - {p.name for p in sequence_folders(release)}
        )
        if missing:
            raise DatasetError(
                f"the release at {release} lacks {len(missing)} sequences of the splits: "
                f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}; delete it and "
                "run `desc-bench data download hpatches` again"
            )
        return folder
