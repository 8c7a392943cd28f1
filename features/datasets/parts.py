"""The one Parquet part writer of the generator and every converter: ``out/part-NNNNN.parquet``.

``PartWriter`` streams tables into files of ``rows_per_file`` rows (the last may hold fewer), in row groups of
``row_group_rows`` (a file's last group may be smaller); it queues less than one row group beyond the table
being written. It never deletes a file: a directory that already holds part files is refused with what to
do, since the reader would read stale parts beside the new ones.

Example::

    >>> import tempfile
    >>> import pyarrow as pa, pyarrow.parquet as pq
    >>> schema = pa.schema([("x", pa.int64())])
    >>> with tempfile.TemporaryDirectory() as out:
    ...     files = write_parts(Path(out), schema, [pa.table({"x": list(range(5))})] * 3, 10, 4)
    ...     [(pq.ParquetFile(f).metadata.num_rows, pq.ParquetFile(f).metadata.num_row_groups) for f in files]
    [(10, 3), (5, 2)]
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, List, Optional

import pyarrow as pa
import pyarrow.parquet as pq


def check_out_dir(out: Path) -> None:
    """Creates ``out``; refuses one that already holds part files (``FileExistsError`` saying what to do)."""
    out.mkdir(parents=True, exist_ok=True)
    stale = sorted(out.glob("part-*.parquet"))
    if stale:
        raise FileExistsError(
            f"{out} already holds {len(stale)} part file(s) ({stale[0].name}, ...); write to an empty directory, "
            f"or remove them first (rm {out}/part-*.parquet) if they are yours to lose"
        )


class PartWriter:
    """Args:
    out: the directory (created if missing; refused if it holds ``part-*.parquet`` already).
    schema: every table is cast to it.
    rows_per_file: rows per file (>= 1).
    row_group_rows: rows per row group (>= 1).
    """

    def __init__(self, out: Path, schema: pa.Schema, rows_per_file: int, row_group_rows: int) -> None:
        if rows_per_file < 1 or row_group_rows < 1:
            raise ValueError(f"rows_per_file={rows_per_file}, row_group_rows={row_group_rows}: both must be >= 1")
        check_out_dir(out)
        self.out, self.schema = out, schema
        self.rows_per_file, self.row_group_rows = rows_per_file, row_group_rows
        self.files: List[str] = []
        self._pending: List[pa.Table] = []
        self._pending_rows = 0
        self._writer: Optional[pq.ParquetWriter] = None
        self._file_rows = 0

    def write(self, table: pa.Table) -> None:
        """Queues ``table`` and writes every complete row group."""
        self._pending.append(table.cast(self.schema))
        self._pending_rows += table.num_rows
        while self._pending_rows >= self._group_size():
            self._flush(self._group_size())

    def abort(self) -> None:
        """Closes the open file without writing what is queued (after an error)."""
        self._pending, self._pending_rows = [], 0
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def close(self) -> None:
        """Writes what is left and closes the last file."""
        while self._pending_rows > 0:
            self._flush(min(self._pending_rows, self._group_size()))
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _group_size(self) -> int:
        return min(self.row_group_rows, self.rows_per_file - self._file_rows)

    def _flush(self, n: int) -> None:
        table = pa.concat_tables(self._pending)
        if self._writer is None:
            path = self.out / f"part-{len(self.files):05d}.parquet"
            self.files.append(str(path))
            self._writer = pq.ParquetWriter(path, self.schema, compression="snappy")
        self._writer.write_table(table.slice(0, n), row_group_size=n)
        rest = table.slice(n)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows -= n
        self._file_rows += n
        if self._file_rows == self.rows_per_file:
            self._writer.close()
            self._writer, self._file_rows = None, 0


def write_parts(out: Path, schema: pa.Schema, tables: Iterable[pa.Table], rows_per_file: int,
                row_group_rows: int) -> List[str]:
    """Writes ``tables`` with one ``PartWriter``; returns the files written. On an error the open file is
    closed with what was written so far, and the error goes on."""
    writer = PartWriter(out, schema, rows_per_file, row_group_rows)
    try:
        for table in tables:
            writer.write(table)
    except BaseException:
        writer.abort()
        raise
    writer.close()
    return writer.files
