"""The studies controller: the worklist's DICOM files as studies, and the comparison with a prior.

It groups the worklist model's records (:mod:`app.studies`, Qt-free) into the Studies list (a
dock tabbed with the worklist), keeps each study's lead image (its most suspicious frontal image
by the active detector) and flag up to date as scores arrive, opens a study on its lead image in
the worklist and viewer, and opens the comparison with an earlier study of the same patient
(:class:`app.studies_view.StudyCompareWindow`).

Order: as the worklist's, patient by patient (:func:`app.studies.order_studies`: a patient's
studies together, newest first, placed by the most suspicious one). Until the reader starts,
studies follow the scores; from then on rows stay where they are, new studies go to the end, and S
(re-sort) places them, as in the worklist, so no study moves under the reader.

Reading: each row says whether its study is unread, partly read or read (from the reading
session's per-file states), the list's summary and the status bar's progress count studies
("12 of 40 studies read"), per opened folder on hover. While the Studies tab is in front, J / K
move between studies, each opening on the study's lead image, and N goes to the next flagged
study not read yet (on its lead image, else on its first image not read), as the same keys do
for cases in the worklist; P compares the current study with
its patient's newest earlier study (or the earlier study chosen under it).

Privacy: the rows show patient and study as the worklist does (pseudonyms while identifiers
are hidden); nothing here writes to the study database or the audit trail.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtWidgets import QDockWidget

from cxrscreen.app.case_loading import LoadedCase, load_case
from cxrscreen.app.records import CaseRecord, format_date, patient_text, study_text
from cxrscreen.app.studies import (
    LATERAL_TEXT,
    Study,
    StudyLead,
    StudyReading,
    earlier_by_study,
    earlier_studies,
    group_studies,
    next_study,
    next_unread_flagged_study,
    order_studies,
    study_lead,
    study_progress,
    study_reading,
)
from cxrscreen.app.studies_view import ImageRow, PriorRow, StudiesPanel, StudyCompareWindow, StudyRow
from cxrscreen.app.training.job import CallThread

if TYPE_CHECKING:
    from cxrscreen.app.main_window import MainWindow

logger = logging.getLogger(__name__)
REFRESH_MS = 400  # the list is recomputed at most this often while files and scores arrive
REFRESH_SHARE = 0.2  # ... and then at most this share of the GUI thread's time (10,000 images: 0.4 s CPU)


class StudiesController(QObject):
    """Studies list, lead images and the comparison with earlier studies, for one window.

    Args:
        window: the main window (its worklist model and panel, reading session, privacy state,
            workers and docks).
    """

    def __init__(self, window: "MainWindow") -> None:
        super().__init__(window)
        self.window = window
        self.model = window.model
        self.panel = StudiesPanel()
        self.studies: dict[str, Study] = {}
        self.files: list[Path] = []
        self.compare_window: StudyCompareWindow | None = None
        self._order: list[str] = []
        self._study_of: dict[Path, str] = {}  # each DICOM image's study
        self._records: dict[Path, CaseRecord] = {}  # the worklist's records by file, as of the last grouping
        self._earlier: dict[str, list[Study]] = {}  # each study's earlier studies
        self._states: dict[Path, tuple[float | None, bool | None, str | None]] = {}  # as of the last refresh
        self._rows: dict[str, tuple[tuple, StudyRow]] = {}  # by study: what the row showed, and the row
        self._leads: dict[str, StudyLead] = {}  # as of the last refresh
        self._reading: dict[str, StudyReading] = {}  # as of the last refresh
        self._fresh = False  # whether leads and reading states are as of now (nothing changed since the refresh)
        self._current_view = ""  # the view the comparison's current pane opened on
        self._resort = True
        self.dock = QDockWidget("Studies", window)
        self.dock.setObjectName("studies_dock")
        self.dock.setWidget(self.panel)
        self.dock.setFeatures(window.docks["worklist"].features())
        window.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.dock)
        window.tabifyDockWidget(window.docks["worklist"], self.dock)
        window.docks["worklist"].raise_()
        window.docks["studies"] = self.dock
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self.refresh)
        self._regroup = True  # files came or went: group again (scores change only the leads)
        for sig in (self.model.rowsInserted, self.model.rowsRemoved, self.model.modelReset):
            sig.connect(self._files_changed)
        for sig in (self.model.layoutChanged, self.model.dataChanged):
            sig.connect(self._soon)
        window.operating.changed.connect(self._soon)
        window.privacy.changed.connect(self._soon)
        window.reading.resorted.connect(self.resort)
        window.reading.session.states_changed.connect(self._soon)
        window.reading.study_progress = self.progress_text  # the status bar's progress counts studies too
        self.panel.image_chosen.connect(self.open_image)
        window.worklist.current_changed.connect(self._follow_worklist)
        self.panel.compare_requested.connect(lambda uid, prior: self.compare(uid, prior or None))
        self.dock.visibilityChanged.connect(lambda shown: shown and self._soon())

    # ================================================================== the list
    @property
    def list_shown(self) -> bool:
        """Whether the Studies list is on screen (a tab behind the Worklist's is "visible" to Qt,
        but has no visible region)."""
        return self.dock.isVisible() and not self.panel.visibleRegion().isEmpty()

    def _files_changed(self, *_args: object) -> None:
        self._regroup = True
        self._soon()

    def _soon(self, *_args: object) -> None:
        self._fresh = False
        if not self._timer.isActive():
            self._timer.start()

    def resort(self) -> None:
        """Place every study by its lead score again (S)."""
        self._resort = True
        self.refresh()

    def refresh(self) -> None:
        """Group the worklist into studies and rewrite the list (only while the list is visible)."""
        self._timer.stop()
        if not self.list_shown and (self.compare_window is None or not self.compare_window.isVisible()):
            self._resort = self._resort or not self.window.reading.session.started
            return  # hidden: recomputed when shown
        t0 = time.perf_counter()
        self._refresh()
        # a large worklist takes a while to group: wait longer before the next (the list lags, the GUI does not)
        self._timer.setInterval(max(REFRESH_MS, int(1000 * (time.perf_counter() - t0) / REFRESH_SHARE)))

    def _refresh(self) -> None:
        if self._regroup:  # records are updated in place by scoring: membership changes only here
            records = self.model.records()
            self._records = {r.path: r for r in records}
            studies, self.files = group_studies(records)
            self.studies = {s.uid: s for s in studies}
            self._study_of = {i.path: s.uid for s in studies for i in s.images}
            self._earlier = earlier_by_study(studies)
            self._regroup = False
        studies = list(self.studies.values())
        self._states = {path: self._image_state(path) for path in self._study_of}
        self._leads = leads = {s.uid: study_lead(s, self._score, self._flagged) for s in studies}
        reading = self._reading = self.readings()
        self._fresh = True
        if self._resort or not self.window.reading.session.started:
            self._order = order_studies(studies, leads)
            self._resort = False
        else:  # the reader has started: rows stay, new studies go to the end
            known = set(self._order)
            self._order = [u for u in self._order if u in self.studies] + [s.uid for s in studies if s.uid not in known]
        earlier = self._earlier
        files = self.files
        show = self.window.privacy.show_identifiers
        cache, self._rows = self._rows, {}
        for uid in self._order:  # a row is made again only when something it shows changed
            study = self.studies[uid]
            priors = earlier[uid]
            signature = (show, leads[uid], reading[uid], tuple(self._states[i.path] for i in study.images),
                         tuple((p.uid, leads[p.uid], reading[p.uid]) for p in priors))
            old = cache.get(uid)
            row = old[1] if old is not None and old[0] == signature else self._row(study, leads[uid], priors, reading)
            self._rows[uid] = (signature, row)
        rows = [self._rows[uid][1] for uid in self._order]
        n_images = sum(len(s.images) for s in studies)
        summary = (f"{len(studies):,} DICOM stud{'y' if len(studies) == 1 else 'ies'} ({n_images:,} images) · "
                   f"{sum(1 for r in rows if r.flagged):,} flagged")
        summary += f"\n{self.progress_text()}"
        if files:
            summary += f"\n{len(files):,} files not in a study (PNG, JPEG, no study UID): in the Worklist tab"
        self.panel.set_rows(rows, summary)
        if self.panel.current_uid() is None:  # the list's row is the viewer's study from the start (J goes on from it)
            self._follow_worklist(self.window.worklist.current_path())
        self.panel.summary_label.setToolTip("\n".join(f"{root.name or root}: {self.progress_text(root)}"
                                                     for root in self._roots()) or "Reading progress of the studies")
        self.window.reading.update_counts()

    def _roots(self) -> list[Path]:
        folders = self.model.progress_by_folder()
        return [root for root, *_counts in folders] if len(folders) > 1 else []

    def readings(self) -> dict[str, StudyReading]:
        """Each study's reading state, by UID (from the reading session's per-file states)."""
        return {uid: study_reading(s, self.window.reading.session.is_read) for uid, s in self.studies.items()}

    def progress_text(self, root: Path | None = None) -> str:
        """The studies' reading progress ("12 of 40 studies read, 3 flagged unread"), of those whose
        first image is under ``root`` when given; "" when the studies are not known (the list was
        not shown since files came or went) or there are none."""
        if self._regroup or not self.studies:
            return ""
        uids = [uid for uid, s in self.studies.items() if root is None or s.images[0].path.is_relative_to(root)]
        if not uids:
            return ""
        if self._fresh:  # as the list shows them
            reading, flagged = self._reading, {uid: self._leads[uid].flagged for uid in uids}
        else:  # something changed since (the list is hidden, or its refresh is due): as of now
            flagged = {uid: any(self.model.is_flagged(self._records[i.path]) for i in self.studies[uid].frontal
                                if i.path in self._records) for uid in uids}
            reading = {uid: study_reading(self.studies[uid], self.window.reading.session.is_read) for uid in uids}
        return study_progress(uids, reading, flagged).text(flags=self.model.threshold is not None)

    def _image_state(self, path: Path) -> tuple[float | None, bool | None, str | None]:
        """What a study row shows of one image: score, flag, why it is out of scope."""
        rec = self._records.get(path)
        if rec is None:
            return None, None, None
        score = self.model.active_score(rec)
        return (score.score if score is not None else None, self.model.is_flagged(rec),
                self.model.out_of_scope_reason(rec))

    def _score(self, path: Path) -> float | None:
        state = self._states.get(path)
        return (state if state is not None else self._image_state(path))[0]

    def _flagged(self, path: Path) -> bool:
        state = self._states.get(path)
        return bool((state if state is not None else self._image_state(path))[1])

    def _row(self, study: Study, lead: StudyLead, priors: list[Study], reading: dict[str, StudyReading]) -> StudyRow:
        n_earlier = len(priors)
        rec = self._records.get(lead.path)
        meta = rec.meta if rec is not None else None
        show, key = self.window.privacy.show_identifiers, self.window.key
        title = " · ".join(t for t in (patient_text(meta, show, key), study_text(meta, show, key)) if t)
        n = len(study.images)
        images = f"{n} image{'s' if n != 1 else ''}" + (f" · {n_earlier} earlier" if n_earlier else "")
        children = []
        for image in study.images:
            label = ("▸ " if image.path == lead.path else "") + f"{image.view or 'view ?'} · {image.path.name}"
            if image.lateral:
                children.append(ImageRow(image.path, label, LATERAL_TEXT, "", ""))
                continue
            score, flagged, out_of_scope = self._states[image.path]
            children.append(ImageRow(image.path, label, f"out of scope: {out_of_scope}" if out_of_scope else "",
                                     *_score_texts(score, flagged)))
        score_text, flag_text = _score_texts(lead.score, self._states[lead.path][1])
        if lead.score is None and all(c.note for c in children):  # every image lateral or refused by the gate
            score_text = "not scored"
        return StudyRow(study.uid, title or "(no patient or study in the header)", images,
                        self._read_text(study, reading[study.uid]), reading[study.uid], score_text, flag_text,
                        lead.flagged, lead.path, n_earlier, len(study.series), tuple(children),
                        tuple(self._prior_row(p, reading[p.uid]) for p in priors))

    def _read_text(self, study: Study, reading: StudyReading) -> str:
        if reading == "partly read":
            n = sum(1 for i in study.images if self.window.reading.session.is_read(i.path))
            return f"{n} of {len(study.images)}"
        return "●" if reading == "unread" else "read"

    def _prior_row(self, prior: Study, reading: StudyReading) -> PriorRow:
        lead = self._leads[prior.uid]
        date = format_date(prior.date, full=self.window.privacy.show_identifiers) or "undated"
        n = len(prior.images)
        return PriorRow(prior.uid, f"◂ earlier study · {date} · {n} image{'s' if n != 1 else ''}",
                        self._read_text(prior, reading), *_score_texts(lead.score, lead.flagged if lead.score is not None
                                                                        else None), lead.path)

    # ================================================================== opening
    def open_image(self, path: Path) -> bool:
        """Make a study's image the worklist's current case (the viewer shows it)."""
        self.window.reading.session.start()  # the reader chose: nothing may move under them now
        if self.window.worklist.select_path(path):
            return True
        self.window.statusBar().showMessage(f"{path.name} is hidden by the worklist's filter (clear it to open "
                                            "this image).", 6000)
        return False

    def _follow_worklist(self, path: Path | None) -> None:
        # J/K, N and clicks in the worklist move the Studies list's row too (without opening anything)
        uid = self._study_of.get(path) if path is not None else None
        if uid is not None:
            self.panel.show_current(uid, path)

    def open_study(self, uid: str) -> bool:
        """Open a study on its lead image (the row's image)."""
        return self.panel.choose(uid)

    def current_study(self) -> Study | None:
        """The current study: the Studies list's current row while the list is shown, else the
        study of the worklist's current case; None when there is none."""
        uid = self.panel.current_uid() if self.list_shown else None
        if uid is None:
            path = self.window.worklist.current_path()
            uid = self._study_of.get(path) if path is not None else None
        return self.studies.get(uid) if uid is not None else None

    # ================================================================== keys
    def action_slots(self) -> dict[str, Callable[[], object]]:
        """The study-level keys (:mod:`app.shortcuts`): J, K and N act on studies while the Studies
        list is in front (on cases otherwise), P compares with an earlier study."""
        case = self.window.reading.action_slots()

        def either(study_slot: Callable[[], object], case_slot: Callable[[], object]) -> Callable[[], object]:
            return lambda: study_slot() if self.list_shown else case_slot()
        return {"next_case": either(lambda: self.next_study(1), case["next_case"]),
                "previous_case": either(lambda: self.next_study(-1), case["previous_case"]),
                "next_flagged": either(self.next_unread_flagged, case["next_flagged"]),
                "compare_earlier": self.compare_current}

    def next_study(self, step: int) -> bool:
        """J / K in the Studies list: open the next (previous) study's lead image."""
        self.window.reading.session.start()
        uid = next_study([r.uid for r in self.panel.rows], self.panel.current_uid(), step)
        return uid is not None and self.open_study(uid)

    def next_unread_flagged(self) -> bool:
        """N in the Studies list: the next flagged study not read yet (wrapping), on its lead image
        or, when that is read, on its first image not read (a lateral not looked at, say)."""
        self.window.reading.session.start()
        self.refresh()  # reading states as of now, not of the last timer
        order = [r.uid for r in self.panel.rows]
        uid = next_unread_flagged_study(order, self.panel.current_uid(), {r.uid: r.reading for r in self.panel.rows},
                                        {r.uid: r.flagged for r in self.panel.rows})
        if uid is None:
            self.window.statusBar().showMessage("No flagged study left unread in the list.", 5000)
            return False
        is_read, study = self.window.reading.session.is_read, self.studies[uid]
        lead = self._leads[uid].path
        path = lead if not is_read(lead) else next(i.path for i in study.images if not is_read(i.path))
        return self.panel.choose(uid, None if path == lead else path)

    def compare_current(self) -> StudyCompareWindow | None:
        """P: compare the current study with an earlier one (the one chosen under it, else the newest)."""
        study = self.current_study()
        if study is None:
            self.window.statusBar().showMessage("No study is open (DICOM images with a study UID are grouped into "
                                                "studies).", 5000)
            return None
        prior = self.panel.current_prior() if self.list_shown else None
        return self.compare(study.uid, prior)

    # ================================================================== comparing
    def compare(self, uid: str, earlier_uid: str | None = None) -> StudyCompareWindow | None:
        """Show an earlier study of the same patient (the newest by default) beside ``uid``."""
        study = self.studies.get(uid)
        if study is None:
            return None
        priors = earlier_studies(list(self.studies.values()), study)
        if not priors:
            self.window.statusBar().showMessage("No earlier study of this patient in the worklist.", 5000)
            return None
        if self.compare_window is None:
            self.compare_window = StudyCompareWindow(self._load, self.window)
            self.compare_window.study_combo.currentIndexChanged.connect(self._on_prior_chosen)
        cw = self.compare_window
        cw.setProperty("study_uid", uid)
        cw.study_combo.blockSignals(True)
        cw.study_combo.clear()
        show = self.window.privacy.show_identifiers
        for p in priors:
            cw.study_combo.addItem(f"{format_date(p.date, full=show) or 'undated'} · {len(p.images)} images", p.uid)
        chosen = max(0, cw.study_combo.findData(earlier_uid)) if earlier_uid else 0
        cw.study_combo.setCurrentIndex(chosen)
        cw.study_combo.blockSignals(False)
        cw.set_pane("current", self._pane_title(study, "Current"), self._pane_images(study))
        lead = study.image(study_lead(study, self._score, self._flagged).path)
        self._current_view = lead.view if lead is not None else ""
        self._on_prior_chosen()
        cw.show()
        cw.raise_()
        return cw

    def _on_prior_chosen(self, *_args: object) -> None:
        cw = self.compare_window
        prior = self.studies.get(cw.study_combo.currentData()) if cw is not None else None
        if cw is not None and prior is not None:
            cw.set_pane("earlier", self._pane_title(prior, "Earlier"), self._pane_images(prior, self._current_view))

    def _pane_title(self, study: Study, which: str) -> str:
        lead = study_lead(study, self._score, self._flagged)
        date = format_date(study.date, full=self.window.privacy.show_identifiers) or "undated"
        text = f"<b>{which}</b> · {date} · {len(study.images)} image{'s' if len(study.images) != 1 else ''}"
        if lead.score is not None:
            text += f" · score {lead.score:.4g}" + (" <span style='color:#c42828'>⚑ flagged</span>" if lead.flagged
                                                     else "")
        return text

    def _pane_images(self, study: Study, view: str = "") -> list[tuple[Path, str]]:
        """A study's images for a compare pane: first the frontal of the same view as ``view`` (a
        prior is compared view for view), else its lead image."""
        lead = study_lead(study, self._score, self._flagged).path
        same = next((i.path for i in study.frontal if view and i.view.upper() == view.upper()), None)
        first = same or lead
        images = sorted(study.images, key=lambda i: i.path != first)
        return [(i.path, " · ".join(p for p in (i.view or "view ?", LATERAL_TEXT if i.lateral else "", i.path.name)
                                    if p)) for i in images]

    def _load(self, path: Path, done: Callable[[LoadedCase | str], None]) -> None:
        thread = CallThread(lambda: load_case(path), self)
        thread.returned.connect(done)
        thread.raised.connect(lambda message: done(message.split(": ", 1)[-1]))
        self.window.workers.start(thread)


def _score_texts(score: float | None, flagged: bool | None) -> tuple[str, str]:
    """A score and flag as the worklist writes them ("0.1234", "⚑" / "—")."""
    if score is None:
        return "", ""
    return f"{score:.4g}", "⚑" if flagged else ("—" if flagged is False else "")
