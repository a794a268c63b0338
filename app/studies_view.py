"""The Studies list and the side-by-side comparison of two studies (thin Qt views).

:class:`StudiesPanel` shows rows the studies controller computes (:class:`StudyRow`, no Qt in
them): one row per study with its reading state, its lead image's score and flag, its images as
children (a lateral says "lateral, not scored") and then the patient's earlier studies in the
list (newest first). Choosing a study opens its lead image; choosing an image opens that image;
choosing an earlier study opens its lead image, and Enter or a double click on it compares it
with the study above it.

:class:`StudyCompareWindow` shows two studies of one patient side by side, the current one on
the right (as radiologists hang a prior to the left of the current film), each on a chosen
image of its study. Window/level is synchronised (both views follow one
:class:`app.state.ViewerState`), and so are zoom and pan (the two view boxes are linked in image
pixel coordinates).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from cxrscreen.app.case_loading import LoadedCase
from cxrscreen.app.state import ViewerState
from cxrscreen.app.viewer.view import RadiographView

_PATH_ROLE = int(Qt.ItemDataRole.UserRole)  # (study UID, image path or None)
_PRIOR_ROLE = _PATH_ROLE + 1  # on an earlier study's row under a study: that study's UID
_FLAG_BRUSH = QBrush(QColor(196, 40, 40))
_QUIET_BRUSH = QBrush(QColor(120, 120, 120))


@dataclass(frozen=True)
class ImageRow:
    """One image under a study row: its file, its label ("PA · a.dcm"), note, score and flag texts."""

    path: Path
    text: str
    note: str  # why it has no score ("lateral, not scored", "out of scope: ..."), else ""
    score: str
    flag: str


@dataclass(frozen=True)
class PriorRow:
    """An earlier study of the patient, under the current study's row.

    Attributes:
        uid: the earlier study.
        text: e.g. "◂ earlier · 2021 · 2 images".
        read: its reading state text, as the Read column writes it.
        score, flag: its lead image's score and flag texts.
        lead: the image it opens on.
    """

    uid: str
    text: str
    read: str
    score: str
    flag: str
    lead: Path


@dataclass(frozen=True)
class StudyRow:
    """One study row.

    Attributes:
        uid: the study (the row's identity; never shown).
        title: patient and study as the worklist shows them (pseudonyms while identifiers are hidden).
        images: e.g. "3 images · 2 series".
        read: the reading state as the Read column writes it ("●" unread, "1 of 2" partly read, "read").
        reading: the reading state ("unread", "partly read", "read").
        score, flag: the lead image's score and flag texts.
        flagged: whether the lead image is flagged.
        lead: the image the row opens on.
        earlier: how many earlier studies of the patient are in the worklist.
        series: how many series it has.
        children: its images.
        priors: the patient's earlier studies in the list, newest first.
    """

    uid: str
    title: str
    images: str
    read: str
    reading: str
    score: str
    flag: str
    flagged: bool
    lead: Path
    earlier: int
    series: int
    children: tuple[ImageRow, ...]
    priors: tuple[PriorRow, ...] = ()


class StudiesPanel(QWidget):
    """The Studies list.

    Signals:
        image_chosen(Path): the reader chose a study (its lead image) or one of its images.
        compare_requested(str, str): the reader asked to compare this study with an earlier one
            (the earlier study's UID, "" for the newest).
    """

    image_chosen = Signal(object)
    compare_requested = Signal(str, str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tree = QTreeWidget()
        self.tree.setObjectName("studies_tree")
        self.tree.setColumnCount(5)
        self.tree.setHeaderLabels(["Study", "Images", "Read", "Score", "Flag"])
        self.tree.headerItem().setToolTip(2, "● unread; \"1 of 2\": partly read (images read of the study's); "
                                             "read: every image read")
        self.tree.setUniformRowHeights(True)
        self.tree.setRootIsDecorated(True)
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col, width in ((1, 150), (2, 46), (3, 70), (4, 38)):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.Interactive)
            self.tree.setColumnWidth(col, width)
        self.tree.currentItemChanged.connect(self._on_current)
        self.tree.itemActivated.connect(self._on_activated)
        self.summary_label = QLabel("")
        self.summary_label.setWordWrap(True)
        self.summary_label.setStyleSheet("color: #555555;")
        self.compare_button = QPushButton("Compare with earlier study (P)")
        self.compare_button.setObjectName("compare_studies")
        self.compare_button.setToolTip("Show an earlier study of the same patient beside this one "
                                       "(window/level, zoom and pan synchronised)")
        self.compare_button.setEnabled(False)
        self.compare_button.clicked.connect(self._on_compare)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.summary_label)
        layout.addWidget(self.compare_button)
        self._rows: dict[str, StudyRow] = {}
        self._items: dict[str, QTreeWidgetItem] = {}
        self._order: list[str] = []  # the study rows' order in the tree
        self._emitting = True

    # ------------------------------------------------------------------ rows
    @property
    def rows(self) -> list[StudyRow]:
        """The study rows, in display order."""
        return [self._rows[uid] for uid in self._order]

    def set_rows(self, rows: Sequence[StudyRow], summary: str) -> None:
        """Show these rows in this order (the current row and expanded studies are kept)."""
        self.summary_label.setText(summary)
        order = [r.uid for r in rows]
        same_shape = order == self._order and all(
            (len(r.children), len(r.priors)) == (len(self._rows[r.uid].children), len(self._rows[r.uid].priors))
            for r in rows)
        self._emitting = False
        try:
            if same_shape:
                for row in rows:
                    old = self._rows[row.uid]
                    if row is not old and row != old:
                        self._fill(self._items[row.uid], row)
            else:
                self._rebuild(rows)
                self._order = order
        finally:
            self._emitting = True
        self._rows = {r.uid: r for r in rows}
        self._update_button()

    def _rebuild(self, rows: Sequence[StudyRow]) -> None:
        current = self.tree.currentItem()
        keep = current.data(0, _PATH_ROLE) if current is not None else None
        expanded = {uid for uid, item in self._items.items() if item.isExpanded()}
        self.tree.clear()
        self._items = {}
        for row in rows:
            item = QTreeWidgetItem()
            self._fill(item, row)
            self.tree.addTopLevelItem(item)
            self._items[row.uid] = item
            if row.uid in expanded:
                item.setExpanded(True)
        if keep is not None:
            item = self._find(keep)
            if item is not None:
                self.tree.setCurrentItem(item)

    def _fill(self, item: QTreeWidgetItem, row: StudyRow) -> None:
        for col, text in enumerate((row.title, row.images, row.read, row.score, row.flag)):
            item.setText(col, text)
        item.setData(0, _PATH_ROLE, (row.uid, None))
        item.setForeground(2, _QUIET_BRUSH if row.reading == "read" else QBrush())
        item.setForeground(4, _FLAG_BRUSH if row.flagged else _QUIET_BRUSH)
        font = QFont(item.font(0))
        font.setBold(row.reading != "read")  # studies not read yet stand out, as unread cases do in the worklist
        for col in range(5):
            item.setFont(col, font)
        item.setToolTip(2, f"{row.reading}: {row.read}" if row.reading == "partly read" else row.reading)
        tip = (f"{len(row.children)} image{'s' if len(row.children) != 1 else ''} in {row.series} series; opens on "
               f"its most suspicious frontal image; {row.earlier} earlier stud{'y' if row.earlier == 1 else 'ies'} "
               "of this patient in the worklist")
        item.setToolTip(0, tip)
        item.setToolTip(1, tip)
        n = len(row.children) + len(row.priors)
        while item.childCount() > n:
            item.removeChild(item.child(item.childCount() - 1))
        for i, child in enumerate(row.children):
            c = item.child(i) if i < item.childCount() else QTreeWidgetItem(item)
            for col, text in enumerate((child.text, child.note, "", child.score, child.flag)):
                c.setText(col, text)
            c.setData(0, _PATH_ROLE, (row.uid, str(child.path)))
            c.setData(0, _PRIOR_ROLE, None)
            c.setForeground(1, _QUIET_BRUSH)
            c.setForeground(4, _FLAG_BRUSH if child.flag == "⚑" else _QUIET_BRUSH)
            c.setToolTip(0, str(child.path.name))
            c.setToolTip(1, child.note)
        italic = QFont(item.font(0))
        italic.setBold(False)
        italic.setItalic(True)
        for i, prior in enumerate(row.priors, start=len(row.children)):
            c = item.child(i) if i < item.childCount() else QTreeWidgetItem(item)
            for col, text in enumerate((prior.text, "", prior.read, prior.score, prior.flag)):
                c.setText(col, text)
                c.setFont(col, italic)
            c.setData(0, _PATH_ROLE, (row.uid, str(prior.lead)))
            c.setData(0, _PRIOR_ROLE, prior.uid)
            c.setForeground(4, _FLAG_BRUSH if prior.flag == "⚑" else _QUIET_BRUSH)
            c.setToolTip(0, "An earlier study of this patient: opens on its lead image; Enter, a double click or "
                            "P compares it with the study above")

    def _find(self, key: tuple[str, str | None]) -> QTreeWidgetItem | None:
        item = self._items.get(key[0])
        if item is None or key[1] is None:
            return item
        return next((item.child(i) for i in range(item.childCount())
                     if item.child(i).data(0, _PATH_ROLE) == key and item.child(i).data(0, _PRIOR_ROLE) is None), None)

    # ------------------------------------------------------------------ choosing
    def current_uid(self) -> str | None:
        """The study of the current row (a study or one of its images)."""
        item = self.tree.currentItem()
        return item.data(0, _PATH_ROLE)[0] if item is not None else None

    def current_prior(self) -> str | None:
        """The earlier study whose row (under a study) is current, or None."""
        item = self.tree.currentItem()
        return item.data(0, _PRIOR_ROLE) if item is not None else None

    def choose_prior(self, uid: str, prior_uid: str) -> bool:
        """Make an earlier study's row under ``uid`` current (opens its lead image)."""
        item = self._items.get(uid)
        found = next((item.child(i) for i in range(item.childCount()) if item.child(i).data(0, _PRIOR_ROLE) == prior_uid),
                     None) if item is not None else None
        if found is None:
            return False
        self.tree.setCurrentItem(found)
        return True

    def choose(self, uid: str, path: Path | None = None) -> bool:
        """Make a study (``path`` None: its row) or one of its images current; emits image_chosen."""
        item = self._find((uid, str(path) if path is not None else None))
        if item is None:
            return False
        if item is self.tree.currentItem():
            self._on_current(item, None)
        else:
            self.tree.setCurrentItem(item)
        return True

    def show_current(self, uid: str, path: Path | None) -> None:
        """Show which study (and image) the viewer is on, without emitting image_chosen."""
        current = self.tree.currentItem()
        if current is not None and path is not None and current.data(0, _PATH_ROLE)[1] == str(path):
            return  # already there (an earlier study's row under the study being compared, too)
        item = self._find((uid, str(path) if path is not None else None))
        if item is None or item is current:
            return
        self._emitting = False
        try:
            self.tree.setCurrentItem(item)
            self.tree.scrollToItem(item)
        finally:
            self._emitting = True

    def _on_current(self, item: QTreeWidgetItem | None, _previous: QTreeWidgetItem | None) -> None:
        self._update_button()
        if item is None or not self._emitting:
            return
        uid, path = item.data(0, _PATH_ROLE)
        row = self._rows.get(uid)
        if row is not None:
            self.image_chosen.emit(Path(path) if path else row.lead)

    def _update_button(self) -> None:
        uid = self.current_uid()
        row = self._rows.get(uid) if uid is not None else None
        self.compare_button.setEnabled(row is not None and row.earlier > 0)

    def _on_compare(self) -> None:
        uid = self.current_uid()
        if uid is not None:
            self.compare_requested.emit(uid, self.current_prior() or "")

    def _on_activated(self, item: QTreeWidgetItem, _column: int) -> None:
        prior = item.data(0, _PRIOR_ROLE)
        if prior:  # Enter or a double click on an earlier study: compare it with the study above
            self.compare_requested.emit(item.data(0, _PATH_ROLE)[0], prior)


class StudyCompareWindow(QWidget):
    """Two studies side by side: an earlier one (left) and the current one (right).

    Args:
        load: decodes a file for display, off the GUI thread; calls back with a
            :class:`LoadedCase` or an error text (the controller owns the worker).
        parent: the main window (the comparison is a separate window over it).

    Each pane has a choice of the study's images (lead image first); the left pane also a
    choice of the earlier study. Window/level, zoom and pan follow one another unless
    "Synchronise" is unchecked.
    """

    def __init__(self, load: Callable[[Path, Callable[[LoadedCase | str], None]], None],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.setObjectName("study_compare")
        self.setWindowTitle("Compare studies — cxrscreen")
        self.resize(1400, 820)
        self._load = load
        self.state = ViewerState(self)  # one window/level for both views: synchronised
        self.views = {side: RadiographView(self.state) for side in ("earlier", "current")}
        self.titles = {side: QLabel("") for side in self.views}
        self.image_combos = {side: QComboBox() for side in self.views}
        self.study_combo = QComboBox()
        self.study_combo.setObjectName("earlier_study")
        self.sync_box = QCheckBox("Synchronise zoom and pan")
        self.sync_box.setChecked(True)
        self.sync_box.toggled.connect(self.set_linked)
        self._requests: dict[str, Path] = {}
        top = QHBoxLayout()
        top.addWidget(QLabel("Earlier study:"))
        top.addWidget(self.study_combo, 1)
        top.addWidget(self.sync_box)
        panes = QHBoxLayout()
        for side, view in self.views.items():
            col = QVBoxLayout()
            row = QHBoxLayout()
            self.titles[side].setTextFormat(Qt.TextFormat.RichText)
            row.addWidget(self.titles[side], 1)
            row.addWidget(self.image_combos[side])
            col.addLayout(row)
            col.addWidget(view, 1)
            panes.addLayout(col, 1)
            self.image_combos[side].currentIndexChanged.connect(lambda _i, s=side: self._on_image(s))
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(panes, 1)
        self.set_linked(True)

    def set_linked(self, on: bool) -> None:
        """Link (or unlink) the two views' zoom and pan."""
        a, b = self.views["earlier"].viewbox, self.views["current"].viewbox
        a.setXLink(b if on else None)
        a.setYLink(b if on else None)

    def set_pane(self, side: str, title: str, images: Sequence[tuple[Path, str]]) -> None:
        """Show a study in a pane: its title (rich text) and its images as (file, label), lead first."""
        if side not in self.views:
            raise ValueError(f"side must be one of {tuple(self.views)}, got {side!r}")
        self.titles[side].setText(title)
        combo = self.image_combos[side]
        combo.blockSignals(True)
        combo.clear()
        for path, label in images:
            combo.addItem(label, str(path))
        combo.blockSignals(False)
        self._on_image(side)

    def shown_path(self, side: str) -> Path | None:
        """The file a pane shows (or is loading)."""
        case = self.views[side].case
        return self._requests.get(side) or (case.path if case is not None else None)

    def _on_image(self, side: str) -> None:
        data = self.image_combos[side].currentData()
        if data is None:
            self.views[side].clear("No image")
            return
        path = Path(data)
        self._requests[side] = path
        self.views[side].clear("Loading…")
        self._load(path, lambda result, s=side, p=path: self._loaded(s, p, result))

    def _loaded(self, side: str, path: Path, result: LoadedCase | str) -> None:
        if self._requests.get(side) != path:
            return  # another image was chosen meanwhile
        del self._requests[side]
        view = self.views[side]
        if isinstance(result, str):
            view.clear(f"Cannot show {path.name}: {result}")
            return
        view.show_case(result, self.image_combos[side].currentText(), keep_view=self._other(side).case is not None)
        if self._other(side).case is None or not self.sync_box.isChecked():
            view.fit()

    def _other(self, side: str) -> RadiographView:
        return self.views["current" if side == "earlier" else "earlier"]
