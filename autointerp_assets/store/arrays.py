"""Fixed-width .npy arrays on object storage, read by rows without downloading the file.

Locally `np.load(mmap_mode="r")` does this; `RemoteArray` is the same for s3://: it parses the
.npy header, then each index fetches only the bytes of the rows asked for (through fsspec's
block cache, so neighbouring rows share a ranged GET).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any

import numpy as np


def npy_header(handle: IO[bytes]) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) of the .npy file open in `handle`."""
    handle.seek(0)
    major, _ = np.lib.format.read_magic(handle)
    read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read(handle)
    if fortran:
        raise ValueError("Fortran-ordered .npy arrays are not supported; save C-ordered arrays")
    return tuple(shape), np.dtype(dtype), handle.tell()


class RemoteArray:
    """Row-major array backed by a remote .npy file. Supports what the readers use:
    a[i], a[i, j], a[i, a:b], a[a:b] and a[int_array] (whole rows)."""

    def __init__(self, handle: IO[bytes], shape: tuple[int, ...], dtype: np.dtype, offset: int,
                 count: Callable[[int], None]):
        self._handle, self.shape, self.dtype, self._offset, self._count = handle, shape, dtype, offset, count
        self._row_items = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
        self._row_bytes = self._row_items * dtype.itemsize

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def _rows(self, lo: int, hi: int) -> np.ndarray:
        hi = max(lo, min(hi, self.shape[0]))
        self._handle.seek(self._offset + lo * self._row_bytes)
        data = self._handle.read((hi - lo) * self._row_bytes)
        self._count(len(data))
        return np.frombuffer(data, dtype=self.dtype).reshape((hi - lo, *self.shape[1:]))

    def __getitem__(self, key: Any) -> Any:
        rest: tuple = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        if isinstance(key, slice):
            lo, hi, step = key.indices(self.shape[0])
            out = self._rows(lo, hi)[::step]
        elif isinstance(key, (int, np.integer)):
            i = int(key) + (self.shape[0] if key < 0 else 0)
            if not 0 <= i < self.shape[0]:
                raise IndexError(f"row {key} out of range for {self.shape[0]} rows")
            out = self._rows(i, i + 1)[0]
        else:
            rows = np.asarray(key, dtype=np.int64)
            out = np.stack([self._rows(int(i), int(i) + 1)[0] for i in rows]) if rows.size else \
                np.empty((0, *self.shape[1:]), self.dtype)
            return out[(slice(None), *rest)] if rest else out
        return out[rest] if rest else out
