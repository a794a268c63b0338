"""Text cells that a spreadsheet will not run as a formula (OWASP "CSV injection").

A cell starting with ``= + - @``, a tab or a carriage return is a formula to Excel, LibreOffice
and Google Sheets (``=HYPERLINK(...)`` in a folder or file name, a DICOM header or a detector
name runs when the CSV is opened). :func:`csv_text` prefixes such text with ``'``, which the
spreadsheet shows as text. Used by every CSV the engine and the app write; numbers are written
as numbers, not through it. Torch-free.
"""
from __future__ import annotations

FORMULA_START: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")


def csv_text(value: str) -> str:
    """``value``, prefixed with ``'`` when a spreadsheet would read it as a formula."""
    return "'" + value if value.startswith(FORMULA_START) else value
