"""A status bar whose messages never run into its permanent widgets (counts, progress, provider).

QStatusBar draws a temporary message across the whole bar's free area without eliding it; a
long message ("…: out of scope: unlike the chest radiographs …") then runs under the counts.
:class:`ElidingStatusBar` elides the message to the room left of the permanent widgets (at the
end, where a path's file name is kept by the caller putting it first) and keeps the full text
in the tooltip.
"""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QStatusBar, QWidget

MARGIN = 24  # pixels kept clear between the message and the first permanent widget


class ElidingStatusBar(QStatusBar):
    """A :class:`QStatusBar` whose ``showMessage`` elides to the free width."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._permanent: list[QWidget] = []
        self._full = ""

    def addPermanentWidget(self, widget: QWidget, stretch: int = 0) -> None:  # noqa: N802 (Qt name)
        """As QStatusBar's; remembered to know how much room the message has."""
        self._permanent.append(widget)
        super().addPermanentWidget(widget, stretch)

    def free_width(self) -> int:
        """Pixels left of the permanent widgets that are shown."""
        used = sum(w.sizeHint().width() + 8 for w in self._permanent if w.isVisible())
        return max(40, self.width() - used - MARGIN)

    def showMessage(self, text: str, timeout: int = 0) -> None:  # noqa: N802 (Qt name)
        """Show ``text`` elided to the free width (full text in the tooltip)."""
        self._full = text
        shown = self.fontMetrics().elidedText(text, Qt.TextElideMode.ElideRight, self.free_width())
        self.setToolTip(text if shown != text else "")
        super().showMessage(shown, timeout)

    def full_message(self) -> str:
        """The last message as given (before eliding)."""
        return self._full


def counts_text(counts: dict[str, int], has_detector: bool) -> str:
    """The counts at the right of the status bar: "16 files · 12 scored · 2 flagged · 4 out of scope"."""
    if not counts["files"]:
        return "no files"
    parts = [f"{counts['files']:,} files"]
    if has_detector:
        parts += [f"{counts['scored']:,} scored", f"{counts['flagged']:,} flagged"]
    if counts["unreadable"]:
        parts.append(f"{counts['unreadable']:,} unreadable")
    if counts.get("out_of_scope"):
        parts.append(f"{counts['out_of_scope']:,} out of scope")
    return " · ".join(parts)


def show_provider(label: QLabel, provider: str, note: str) -> str:
    """Where the detector runs: "CPU" / "CUDA", or "⚠ CPU (fallback)" in orange when a GPU was not used.

    Returns:
        The short provider name.
    """
    short = provider.replace("ExecutionProvider", "")
    label.setText(f"⚠ {short} (fallback)" if note else short)
    label.setStyleSheet("color: #c06000; font-weight: bold;" if note else "")
    label.setToolTip(note or f"onnxruntime {provider}")
    return short
