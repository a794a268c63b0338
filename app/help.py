"""The help dialog: every shortcut and mouse gesture (from :mod:`app.shortcuts`)."""
from __future__ import annotations

from itertools import groupby

from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QTextBrowser, QVBoxLayout, QWidget

from cxrscreen.app.shortcuts import MOUSE, SHORTCUTS


def shortcuts_html() -> str:
    """The shortcut table as HTML, keys in the platform's notation."""
    parts = ["<style>td{padding:2px 12px 2px 0;} th{text-align:left;padding-top:10px;}</style><table>"]
    for group, items in groupby(SHORTCUTS, key=lambda s: s.group):
        parts.append(f"<tr><th colspan=2>{group}</th></tr>")
        for s in items:
            keys = ", ".join(QKeySequence(k).toString(QKeySequence.SequenceFormat.NativeText) for k in s.keys)
            parts.append(f"<tr><td><b>{keys}</b></td><td>{s.text.rstrip('…')}</td></tr>")
    parts.append("<tr><th colspan=2>Mouse</th></tr>")
    for what, does in MOUSE:
        parts.append(f"<tr><td><b>{what}</b></td><td>{does}</td></tr>")
    parts.append("</table>")
    return "".join(parts)


class HelpDialog(QDialog):
    """Lists the shortcuts and what the panels mean."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("cxrscreen: keyboard shortcuts")
        self.resize(560, 640)
        layout = QVBoxLayout(self)
        intro = QLabel("Scores come from an anomaly detector trained without annotations. A flag means "
                       "the image scores above the chosen share of the detector's known-normal images: "
                       "it asks for a look, it is not a diagnosis.")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        text = QTextBrowser()
        text.setHtml(shortcuts_html())
        layout.addWidget(text)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
