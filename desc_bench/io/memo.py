"""A small in-process cache bounded in bytes, most recently used kept (thread-safe).

It holds what one process reads or computes more than once for the same input, e.g. the patch
files of a sequence that each descriptor of a run describes, or the raw SIFT that SIFT and
RootSIFT share. Keys must name everything the value depends on (file sizes and modification
times, pixel digests); values are read-only numpy arrays or tuples/dicts of them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any


class BoundedCache:
    def __init__(self, max_bytes: int):
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes, self.max_bytes = 0, max_bytes
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key][0]

    def put(self, key: Hashable, value: Any, nbytes: int) -> None:
        """Keep ``value`` (of ``nbytes``), dropping the least recently used beyond the bound; a value
        larger than the bound is not kept."""
        with self._lock:
            if key in self._items or nbytes > self.max_bytes:
                return
            self._items[key] = (value, nbytes)
            self._bytes += nbytes
            while self._bytes > self.max_bytes:
                _, (_, size) = self._items.popitem(last=False)
                self._bytes -= size

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
