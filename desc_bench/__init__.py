"""desc-bench: benchmark harness for local image descriptors.

Public API::

    import desc_bench
    desc_bench.descriptors()                       # every registered descriptor and its availability
    d = desc_bench.descriptor("sift-opencv")       # build one
    d.compute_patches(patches)                     # (B, 1, P, P) 0..255 -> (B, dim)
    ds = desc_bench.dataset("hpatches-synth")      # a PatchSet
    result = desc_bench.evaluate(["sift-opencv"], "hpatches-synth")  # .record, .markdown, .record_path
"""

from __future__ import annotations

from ._version import __version__
from .adapters.registry import descriptor, descriptors  # noqa: E402

__all__ = ["__version__", "descriptor", "descriptors", "dataset", "evaluate", "time_descriptor"]


def dataset(name: str, data_dir=None):
    """Open a registered dataset by name (``desc-bench list`` shows them)."""
    from .datasets.registry import dataset as _dataset

    return _dataset(name, data_dir=data_dir)


def evaluate(descriptor_names, dataset_name: str = "hpatches-synth", **config):
    """Run descriptors on a dataset (``desc-bench run``); returns a RunOutput (record, markdown, paths).

    ``config`` takes the fields of :class:`~desc_bench.bench.runner.RunConfig` (split, tasks,
    protocol, device, output=None to write nothing, ...).
    """
    from .bench.runner import RunConfig, run

    return run(RunConfig(descriptors=tuple(descriptor_names), dataset=dataset_name, **config))


def time_descriptor(name: str, **config):
    """Time one descriptor (see ``desc-bench time``)."""
    from .bench.timing import TimingConfig, time_descriptors

    return time_descriptors(TimingConfig(descriptors=(name,), **config))
