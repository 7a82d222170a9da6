"""Reading raw files so that every failure names the file and the line, column or archive member.

Importers never open a source file directly: they go through these helpers, which turn the
library errors that name nothing (``UnicodeDecodeError``, ``json.JSONDecodeError``, ``EOFError``
of a truncated gzip, ``zipfile.BadZipFile``, ``csv.Error``) into a :class:`DataFormatError` saying
where the problem is and what it is. Lines are counted like ``open(path, encoding="utf-8")`` counts
them (universal newlines), so the numbers match what an editor shows.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import zipfile
import zlib
from pathlib import Path
from typing import Any, Iterator

from mmq.data.schema import DataFormatError

GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)  # truncated stream, bad header, bad data


def decode_utf8(payload: bytes, where: str, first_line: int = 1) -> str:
    """``payload`` as UTF-8; invalid bytes raise a DataFormatError naming ``where`` and the line."""
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as error:
        line = first_line + payload[: error.start].count(b"\n")
        column = error.start - (payload.rfind(b"\n", 0, error.start) + 1) + 1
        raise DataFormatError(f"{where}, line {line}, column {column}: not valid UTF-8 (byte "
                              f"0x{payload[error.start]:02x}); re-save the file as UTF-8") from None


def read_text(path: Path) -> str:
    """The whole file as UTF-8 text (line endings untouched)."""
    return decode_utf8(Path(path).read_bytes(), str(path))


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line_number, line)`` of a text file, or of a gzipped one when the name ends in ``.gz``."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    line_number = 0
    try:
        with opener(path, "rb") as handle:
            for raw in handle:
                text = decode_utf8(raw, str(path), first_line=line_number + 1)
                for line in io.StringIO(text, newline=None):  # universal newlines, as text mode
                    line_number += 1
                    yield line_number, line
    except GZIP_ERRORS as error:
        raise DataFormatError(f"{path}: truncated or corrupt gzip file after line {line_number} "
                              f"({type(error).__name__}: {error}); download it again") from None


def read_json(path: Path) -> Any:
    """Parse a JSON document; a syntax error or a truncated file names the line and column."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        truncated = " (the file looks truncated)" if error.pos >= len(text.rstrip()) else ""
        raise DataFormatError(f"{path}, line {error.lineno}, column {error.colno}: invalid JSON: "
                              f"{error.msg}{truncated}") from None


def check_csv(path: Path, text: str | None = None, *, where: str | None = None, same_width: bool = False) -> None:
    """Reject CSV text that a strict parser cannot read (an unclosed quote, text after a closing quote).

    pandas' lenient python engine would otherwise swallow everything after an unclosed quote as one
    bad row; this check names the line instead. ``same_width``: every row must have the header's
    number of fields (otherwise rows with a wrong count are left to the importer, which counts them).
    """
    where = where or str(path)
    text = read_text(path) if text is None else text
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    row_start, width = 1, None
    try:
        for fields in reader:
            if same_width and fields:
                width = len(fields) if width is None else width
                if len(fields) != width:
                    raise DataFormatError(f"{where}, line {row_start}: {len(fields)} fields, the header has {width}")
            row_start = reader.line_num + 1
    except csv.Error as error:
        detail = str(error)
        if reader.line_num > row_start:  # the row swallowed the following lines: a quote never closed
            detail += f"; the row starting here runs on to line {reader.line_num}, an unclosed quote?"
        raise DataFormatError(f"{where}, line {row_start}: malformed CSV ({detail})") from None


@contextlib.contextmanager
def open_zip(path: Path) -> Iterator[zipfile.ZipFile]:
    """Open a zip archive; a truncated or non-zip file is a DataFormatError naming it."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise DataFormatError(f"{path}: not a readable zip archive, truncated or corrupt ({error}); "
                              "download it again") from None
    with archive:
        yield archive


def read_zip_member(archive: zipfile.ZipFile, path: Path, member: str) -> bytes:
    """The bytes of ``member``; a corrupt or truncated member names the archive and the member."""
    try:
        return archive.read(member)
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as error:
        raise DataFormatError(f"{path}, member {member}: cannot be read, truncated or corrupt "
                              f"({type(error).__name__}: {error})") from None
