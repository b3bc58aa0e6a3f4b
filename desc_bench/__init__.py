"""desc-bench: benchmark harness for local image descriptors.

Public API::

    import desc_bench
    desc_bench.descriptors()                       # every registered descriptor and its availability
    d = desc_bench.descriptor("sift-opencv")       # build one
    d.compute_patches(patches)                     # (B, 1, P, P) 0..255 -> (B, dim)
    ds = desc_bench.dataset("hpatches-synth")      # a PatchSet
    out = desc_bench.run(["sift-opencv"], "hpatches-synth")  # what `desc-bench run` does: .record, .markdown
"""

from __future__ import annotations

import warnings

from ._version import __version__
from .adapters.registry import descriptor, descriptors

__all__ = ["__version__", "descriptor", "descriptors", "dataset", "run", "time_descriptor"]


def dataset(name: str, data_dir=None):
    """Open a registered dataset by name (``desc-bench list`` shows them)."""
    from .datasets.registry import dataset as _dataset

    return _dataset(name, data_dir=data_dir)


def run(descriptor_names, dataset_name: str = "hpatches-synth", **config):
    """Run descriptors on a dataset, as ``desc-bench run`` does; returns a RunOutput (record,
    markdown, record_path, unmeasured).

    ``config`` takes the fields of :class:`~desc_bench.bench.runner.RunConfig` (split, tasks,
    protocol, device, output=None to write nothing, ...).
    """
    from .api import run as _run
    from .bench.runner import RunConfig

    return _run(RunConfig(descriptors=tuple(descriptor_names), dataset=dataset_name, **config))


def evaluate(descriptor_names, dataset_name: str = "hpatches-synth", **config):
    """Deprecated name of :func:`run` (``desc-bench evaluate`` scores a folder of descriptors instead)."""
    warnings.warn("desc_bench.evaluate() is now desc_bench.run()", DeprecationWarning, stacklevel=2)
    return run(descriptor_names, dataset_name, **config)


def time_descriptor(name: str, **config):
    """Time one descriptor (see ``desc-bench time``)."""
    from .bench.timing import TimingConfig, time_descriptors

    return time_descriptors(TimingConfig(descriptors=(name,), **config))
