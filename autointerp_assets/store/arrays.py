"""Fixed-width .npy arrays read by rows, locally (memory map) or from object storage (ranged reads).

`RowArray` is what `ArtifactStore.open_array` returns: slicing rows gives a lazy view (nothing
is read); indexing a row, an element or a list of rows reads just those bytes, and counts them.
Locally the bytes come from a read-only memory map; on s3:// from ranged GETs through fsspec's
block cache, so neighbouring rows share a request.
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


class RowArray:
    """Rows [start, start + shape[0]) of a row-major array. Supports a[i], a[i, j], a[i, a:b],
    a[a:b] (a lazy view), a[int_array] and np.asarray(a)."""

    def __init__(self, read_rows: Callable[[int, int], np.ndarray], shape: tuple[int, ...], dtype: np.dtype,
                 count: Callable[[int], None], start: int = 0,
                 take: Callable[[np.ndarray], np.ndarray] | None = None):
        self._read_rows, self.shape, self.dtype, self._count, self._start = read_rows, shape, dtype, count, start
        self._take = take  # reads scattered rows in one go, where the backend can

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def _rows(self, lo: int, hi: int) -> np.ndarray:
        out = self._read_rows(self._start + lo, self._start + max(lo, hi))
        self._count(out.nbytes)
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.array(self._rows(0, self.shape[0]))
        return out if dtype is None else out.astype(dtype)

    def tolist(self) -> list:
        return np.asarray(self).tolist()

    def __getitem__(self, key: Any) -> Any:
        rest: tuple = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        if isinstance(key, slice):
            lo, hi, step = key.indices(self.shape[0])
            if step == 1 and not rest:  # a view: read nothing yet
                return RowArray(self._read_rows, (max(0, hi - lo), *self.shape[1:]), self.dtype, self._count,
                                self._start + lo, self._take)
            out = self._rows(lo, hi)[::step]
        elif isinstance(key, (int, np.integer)):
            i = int(key) + (self.shape[0] if key < 0 else 0)
            if not 0 <= i < self.shape[0]:
                raise IndexError(f"row {key} out of range for {self.shape[0]} rows")
            out = self._rows(i, i + 1)[0]
        else:
            rows = np.asarray(key, dtype=np.int64)
            if rows.size and (rows.min() < -self.shape[0] or rows.max() >= self.shape[0]):
                raise IndexError(f"rows out of range for {self.shape[0]} rows")
            rows = np.where(rows < 0, rows + self.shape[0], rows) + self._start
            if self._take is not None:
                out = self._take(rows)
            else:
                parts = [self._read_rows(int(i), int(i) + 1) for i in rows]
                out = np.concatenate(parts) if parts else np.empty((0, *self.shape[1:]), self.dtype)
            self._count(out.nbytes)
            return out[(slice(None), *rest)] if rest else out
        return out[rest] if rest else out


def mapped_rows(path: str, count: Callable[[int], None]) -> RowArray:
    mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    return RowArray(lambda lo, hi: mapped[lo:hi], mapped.shape, mapped.dtype, count, take=lambda rows: mapped[rows])


def remote_rows(handle: IO[bytes], count: Callable[[int], None]) -> RowArray:
    shape, dtype, offset = npy_header(handle)
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize if len(shape) > 1 else dtype.itemsize

    def read(lo: int, hi: int) -> np.ndarray:
        hi = max(lo, min(hi, shape[0]))
        handle.seek(offset + lo * row_bytes)
        return np.frombuffer(handle.read((hi - lo) * row_bytes), dtype=dtype).reshape((hi - lo, *shape[1:]))

    return RowArray(read, shape, dtype, count)
