"""Memory bounds of what the server keeps between reruns: a store that drops its least recently
used entries once their sizes add up past a number of bytes, and the size of a loaded dataset.

The registry (ui/registry.py) keeps loaded datasets and uploaded files in such stores, so that
one browser session loading many files, or one file at many offsets, cannot fill the memory: a
dataset dropped from memory is loaded again from its source when it is next needed. Limits, in
megabytes (2**20 bytes), read at each use:

  DELIFT_DATASET_MEMORY_MB  loaded datasets, as estimated by dataset_bytes (default 2048)
  DELIFT_UPLOAD_MEMORY_MB   uploaded files' bytes (default 512); they stay in the cache as well
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

from delift_core.data.dataset import Dataset
from delift_core.errors import ConfigError

DATASET_MEMORY_ENV = "DELIFT_DATASET_MEMORY_MB"
UPLOAD_MEMORY_ENV = "DELIFT_UPLOAD_MEMORY_MB"
DEFAULT_DATASET_MEMORY_MB = 2048
DEFAULT_UPLOAD_MEMORY_MB = 512
# Bytes a loaded record takes besides its texts: the Record and its field mapping, the parsed
# source record, the hash and id strings, one object header per text (measured with tracemalloc
# on short alpaca records: tests/app/test_registry_memory.py checks the estimate).
RECORD_BYTES = 900


def dataset_bytes(ds: Dataset) -> int:
    """Estimated bytes a dataset takes in memory: per record RECORD_BYTES plus its characters
    (the canonical texts, or the record's top-level text fields when those hold more)."""
    total = 0
    for record in ds.records:
        texts = len(record.instruction) + len(record.input) + len(record.output)
        fields = sum(len(value) for value in record.fields.values() if isinstance(value, str))
        total += RECORD_BYTES + max(texts, fields)
    return total


def megabytes_setting(env: str, default_mb: int) -> int:
    """Bytes from the environment variable `env`, in MB (1 MB = 2**20 bytes), else `default_mb`."""
    value = os.environ.get(env, "").strip()
    if not value:
        return default_mb * 2**20
    try:
        megabytes = float(value)
    except ValueError:
        megabytes = -1.0
    if not megabytes > 0:
        raise ConfigError(f"${env} must be a number of megabytes above 0; got {value!r}")
    return int(megabytes * 2**20)


def dataset_limit() -> int:
    """Bytes loaded datasets may take together ($DELIFT_DATASET_MEMORY_MB)."""
    return megabytes_setting(DATASET_MEMORY_ENV, DEFAULT_DATASET_MEMORY_MB)


def upload_limit() -> int:
    """Bytes uploaded files may take together in memory ($DELIFT_UPLOAD_MEMORY_MB)."""
    return megabytes_setting(UPLOAD_MEMORY_ENV, DEFAULT_UPLOAD_MEMORY_MB)


class ByteBoundedStore:
    """Entries by key, each with its size in bytes, least recently used first.

    `put` drops the least recently used entries while the sizes add up past the limit it is
    given; the entry just put always stays, however large, so that what was loaded last can be
    used. Not thread-safe: the registry calls it under its own lock.
    """

    def __init__(self) -> None:
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self.total_bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def get(self, key: Hashable) -> Any:
        """The value stored under `key` (now the most recently used), or None."""
        if key not in self._items:
            return None
        self._items.move_to_end(key)
        return self._items[key][0]

    def put(self, key: Hashable, value: Any, size: int, max_bytes: int) -> list[Hashable]:
        """Store `value` as the most recently used entry; returns the keys dropped to keep the
        total at most `max_bytes`."""
        if key in self._items:
            self.total_bytes -= self._items.pop(key)[1]
        self._items[key] = (value, size)
        self.total_bytes += size
        dropped = []
        while self.total_bytes > max_bytes and len(self._items) > 1:
            old, (_, old_size) = self._items.popitem(last=False)
            self.total_bytes -= old_size
            dropped.append(old)
        return dropped

    def clear(self) -> None:
        self._items.clear()
        self.total_bytes = 0
