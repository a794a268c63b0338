"""What is in the folders a clinician drops, and what is wrong with them, before any training.

:func:`summarise_folder` reads headers only (:func:`engine.io.scan_folder`): image count, image
sizes, formats, views, modalities and body parts from DICOM headers, unreadable files with the
reason. :func:`find_duplicates` finds identical files across (and within) folders by size,
then by content hash. :func:`check_training_data` turns summaries into findings:

- errors (training cannot start): a missing folder, fewer than 3 readable known normals (the
  engine's minimum), the same file in two roles (the engine refuses it), validation images that
  are training images, a validation set without both classes;
- warnings: few known normals or unlabeled images, identical images in two folders under
  different names, lateral views, views that differ between folders, headers saying the image
  is not a chest radiograph (body part, modality), tiny or oddly shaped images, unreadable files;
- notes: colour images (converted to grey).

Labelled validation data (:func:`read_validation`) follows one convention: a folder with
``normal/`` and ``abnormal/`` subfolders (any depth inside each), or a folder holding a
``labels.csv``, or a CSV file; a CSV has a header with ``path`` and ``label`` (0 normal,
1 abnormal, empty = unknown, skipped), paths relative to the CSV's folder unless absolute —
the format of ``cxrscreen eval --labels``.

No Qt: the panel runs these in worker threads.
"""
from __future__ import annotations

import csv
import hashlib
import os
import statistics
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Literal, Mapping

from cxrscreen.engine.io import scan_folder

Role = Literal["normal", "unlabeled", "abnormal", "validation"]
Severity = Literal["error", "warning", "note"]
ROLE_TEXT: dict[str, str] = {"normal": "known-normal", "unlabeled": "unlabeled", "abnormal": "confirmed-abnormal",
                             "validation": "validation"}
MIN_NORMALS = 3  # the engine's minimum (it holds some out for calibration)
FEW_NORMALS = 100  # below: a warning (the methods' papers train on thousands)
FEW_UNLABELED = 50
SMALL_SIDE = 128  # pixels: smaller images carry little for a 64 px detector and suggest thumbnails
CHEST_BODY_PARTS = frozenset({"CHEST", "THORAX", "LUNG", "LUNGS", "THORACIC", "CHEST_PA", "CHEST_AP", "TORAX", "THORAX PA"})
XRAY_MODALITIES = frozenset({"CR", "DX", "DR", "RG", "PX", "OT"})
LATERAL_VIEWS = frozenset({"LL", "RL", "LAT", "LATERAL", "LLD", "RLD", "XTABLE"})
LABELS_CSV = "labels.csv"


class ValidationSourceError(ValueError):
    """Labelled validation data cannot be read.

    Attributes:
        path: the folder or file given.
        reason: what is wrong.
    """

    def __init__(self, path: Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass
class FolderSummary:
    """What a folder holds (header-only scan).

    Attributes:
        folder: the folder.
        images: readable image files, in scan order.
        unreadable: files that look like images but cannot be read, with the reason.
        sizes: (rows, columns) of each readable image, in the order of ``images``.
        file_bytes: file size of each readable image, in the order of ``images``.
        formats, views, modalities, body_parts: counts from the headers ("" when absent).
        colour: images stored with more than one sample per pixel.
        seconds: how long the scan took.
        stopped: whether the scan was stopped before the end.
    """

    folder: Path
    images: list[Path] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)
    file_bytes: list[int] = field(default_factory=list)
    formats: Counter = field(default_factory=Counter)
    views: Counter = field(default_factory=Counter)
    modalities: Counter = field(default_factory=Counter)
    body_parts: Counter = field(default_factory=Counter)
    colour: int = 0
    seconds: float = 0.0
    stopped: bool = False

    @property
    def count(self) -> int:
        """Readable images."""
        return len(self.images)

    def size_text(self) -> str:
        """Image sizes in one phrase: "1,024 × 1,280 px (median; 480–2,916 px wide)"."""
        if not self.sizes:
            return "no images"
        rows = [r for r, _ in self.sizes]
        cols = [c for _, c in self.sizes]
        mr, mc = int(statistics.median(rows)), int(statistics.median(cols))
        if min(rows) == max(rows) and min(cols) == max(cols):
            return f"all {mc:,} × {mr:,} px"
        return f"median {mc:,} × {mr:,} px (width {min(cols):,}–{max(cols):,}, height {min(rows):,}–{max(rows):,})"

    def describe(self) -> str:
        """One line for the drop zone."""
        parts = [f"{self.count:,} image{'s' if self.count != 1 else ''}", self.size_text()]
        fmts = ", ".join(f"{k} {v:,}" for k, v in self.formats.most_common())
        if fmts:
            parts.append(fmts)
        n_bad = len(self.unreadable)
        parts.append(f"{n_bad:,} unreadable (left out)" if n_bad else "no unreadable files")
        return " · ".join(parts)


@dataclass(frozen=True)
class Finding:
    """One thing the panel tells the user about the data.

    Attributes:
        severity: "error" (training cannot start), "warning" or "note".
        text: the sentence shown.
        role: the folder it is about, or None for several.
        details: file paths or lines behind it (shown in a tooltip or on request).
    """

    severity: Severity
    text: str
    role: Role | None = None
    details: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabelledValidation:
    """Labelled images for validation.

    Attributes:
        source: the folder or CSV given.
        kind: "folders" (normal/ and abnormal/ subfolders) or "csv".
        paths: the images (absolute).
        labels: 0 normal, 1 abnormal, per image.
        csv_path: the CSV itself when ``kind`` is "csv" (given to the engine as it is).
    """

    source: Path
    kind: Literal["folders", "csv"]
    paths: tuple[Path, ...]
    labels: tuple[int, ...]
    csv_path: Path | None = None

    @property
    def n_normal(self) -> int:
        return sum(1 for v in self.labels if v == 0)

    @property
    def n_abnormal(self) -> int:
        return sum(1 for v in self.labels if v == 1)

    def describe(self) -> str:
        how = "normal/ and abnormal/ subfolders" if self.kind == "folders" else f"labels from {self.source.name if self.csv_path == self.source else LABELS_CSV}"
        return f"{len(self.paths):,} labelled images: {self.n_normal:,} normal, {self.n_abnormal:,} abnormal ({how})"

    def write_csv(self, path: Path) -> Path:
        """Write the labels as `cxrscreen eval --labels` reads them (absolute paths)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["path", "label"])
            for p, lab in zip(self.paths, self.labels):
                w.writerow([str(p), lab])
        return path


def summarise_folder(folder: Path, should_stop: Callable[[], bool] | None = None,
                     progress: Callable[[int], None] | None = None, progress_every: int = 100) -> FolderSummary:
    """Scan ``folder`` (recursive, headers only) into a :class:`FolderSummary`.

    Args:
        folder: the folder.
        should_stop: polled between files; the summary so far is returned when it says True.
        progress: called with the number of files seen, every ``progress_every`` files.
    """
    t0 = time.monotonic()
    s = FolderSummary(Path(folder))
    seen = 0
    for item in scan_folder(Path(folder)):
        if should_stop is not None and should_stop():
            s.stopped = True
            break
        seen += 1
        if progress is not None and seen % progress_every == 0:
            progress(seen)
        if item.error is not None or item.meta is None:
            s.unreadable.append((Path(item.path), item.error.reason if item.error is not None else "no header"))
            continue
        m = item.meta
        s.images.append(Path(item.path))
        s.sizes.append((int(m.rows), int(m.columns)))
        try:
            s.file_bytes.append(os.stat(item.path).st_size)
        except OSError:
            s.file_bytes.append(-1)
        s.formats[str(m.format).upper()] += 1
        s.views[(m.view_position or "").strip().upper()] += 1
        s.modalities[(m.modality or "").strip().upper()] += 1
        s.body_parts[(m.body_part or "").strip().upper()] += 1
        if m.samples_per_pixel > 1:
            s.colour += 1
    s.seconds = time.monotonic() - t0
    return s


def find_duplicates(summaries: Mapping[str, FolderSummary], should_stop: Callable[[], bool] | None = None
                    ) -> dict[tuple[str, str], list[tuple[Path, Path]]]:
    """Identical image files, by pair of roles (a role with itself: duplicates within a folder).

    Files are grouped by size first; files sharing a size are compared by a hash of their first
    and last 64 KiB (uncompressed DICOMs of one size differ in their headers), and only files
    sharing that too are hashed whole (SHA-256), so distinct images are rarely read in full.
    The same file reached twice (a symlink, or one folder inside another) counts as a
    duplicate too.
    """
    by_size: dict[int, list[tuple[str, Path]]] = defaultdict(list)
    for role, s in summaries.items():
        for path, size in zip(s.images, s.file_bytes):
            if size >= 0:
                by_size[size].append((role, path))
    out: dict[tuple[str, str], list[tuple[Path, Path]]] = defaultdict(list)
    order = {r: i for i, r in enumerate(summaries)}
    for group in by_size.values():
        if len(group) < 2:
            continue
        candidates: list[list[tuple[str, Path]]] = []
        by_ends: dict[str, list[tuple[str, Path]]] = defaultdict(list)
        for role, path in group:
            if should_stop is not None and should_stop():
                return dict(out)
            digest = _file_hash(path, ends_only=True)
            if digest is not None:
                by_ends[digest].append((role, path))
        for same_ends in by_ends.values():
            if len(same_ends) < 2:
                continue
            by_hash: dict[str, list[tuple[str, Path]]] = defaultdict(list)
            for role, path in same_ends:
                if should_stop is not None and should_stop():
                    return dict(out)
                digest = _file_hash(path)
                if digest is not None:
                    by_hash[digest].append((role, path))
            candidates += [same for same in by_hash.values() if len(same) > 1]
        for same in candidates:
            for i in range(len(same)):
                for j in range(i + 1, len(same)):
                    (ra, pa), (rb, pb) = same[i], same[j]
                    if order[ra] > order[rb]:
                        (ra, pa), (rb, pb) = (rb, pb), (ra, pa)
                    out[(ra, rb)].append((pa, pb))
    return dict(out)


def _file_hash(path: Path, ends_only: bool = False, end_bytes: int = 1 << 16) -> str | None:
    """SHA-256 of a file, or of its first and last ``end_bytes`` (None when it cannot be read)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            if ends_only:
                h.update(f.read(end_bytes))
                f.seek(0, 2)
                size = f.tell()
                f.seek(max(end_bytes, size - end_bytes))
                h.update(f.read(end_bytes))
            else:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def check_training_data(summaries: Mapping[str, FolderSummary | None],
                        duplicates: Mapping[tuple[str, str], list[tuple[Path, Path]]] | None = None,
                        validation: LabelledValidation | None = None,
                        required: Iterable[str] = ("normal", "unlabeled"),
                        min_counts: Mapping[str, int] | None = None) -> list[Finding]:
    """Findings about the dropped data, errors first.

    Args:
        summaries: folder summaries by role ("normal", "unlabeled", "abnormal"); None = not given.
        duplicates: the output of :func:`find_duplicates` (None: not checked yet).
        validation: labelled validation images, if given.
        required: roles that must be given.
        min_counts: the fewest readable images per role (the method's declaration); the known
            normals need at least :data:`MIN_NORMALS` in any case.
    """
    out: list[Finding] = []
    given = {r: s for r, s in summaries.items() if s is not None}
    for role in required:
        if role not in given:
            out.append(Finding("error", f"Drop a folder of {ROLE_TEXT[role]} radiographs.", role))  # type: ignore[arg-type]
    minimum = {"normal": MIN_NORMALS, **{r: n for r, n in (min_counts or {}).items() if n > 0}}
    minimum["normal"] = max(minimum["normal"], MIN_NORMALS)
    short = set()
    for role, least in minimum.items():
        s = given.get(role)
        if s is not None and not s.stopped and s.count < least:
            short.add(role)
            why = " (some are held out to calibrate the scores)" if role == "normal" else ""
            out.append(Finding("error", f"The {ROLE_TEXT[role]} folder has {s.count} readable radiographs; this "
                                        f"method needs at least {least}{why}.", role))  # type: ignore[arg-type]
    normal = given.get("normal")
    if normal is not None and not normal.stopped and "normal" not in short and normal.count < FEW_NORMALS:
        out.append(Finding("warning", f"Only {normal.count} known normals: a detector learns what normal looks "
                                      f"like from them; {FEW_NORMALS} or more are advisable (the methods' papers "
                                      "use hundreds to thousands).", "normal"))
    unl = given.get("unlabeled")
    if unl is not None and not unl.stopped and "unlabeled" not in short and unl.count < FEW_UNLABELED:
        out.append(Finding("warning" if unl.count else "error",
                           f"The unlabeled folder has {unl.count} readable radiographs"
                           + (f"; {FEW_UNLABELED} or more make the dual-distribution methods work." if unl.count
                              else ": the dual-distribution methods need unlabeled images."), "unlabeled"))
    # the same file in two roles (by real path): the engine refuses it
    real = {r: {_real(p): p for p in s.images} for r, s in given.items()}
    roles = list(given)
    for i, ra in enumerate(roles):
        for rb in roles[i + 1:]:
            both = set(real[ra]) & set(real[rb])
            if both:
                ex = sorted(both)[:5]
                out.append(Finding("error", f"{_n(len(both), 'file is', 'files are')} both in the {ROLE_TEXT[ra]} and the {ROLE_TEXT[rb]} "
                                            f"folder (the same folder dropped twice, or one inside the other); a file "
                                            "must be in one of them.", None, tuple(str(p) for p in ex)))
    if validation is not None:
        train_files = set().union(*(set(v) for v in real.values())) if real else set()
        overlap = [p for p in validation.paths if _real(p) in train_files]
        if overlap:
            out.append(Finding("error", f"{_n(len(overlap), 'validation image is also a training image', 'validation images are also training images')}: the metrics "
                                        "would be optimistic. Use labelled images the detector is not trained on.",
                               "validation", tuple(str(p) for p in overlap[:5])))
        if validation.n_normal == 0 or validation.n_abnormal == 0:
            out.append(Finding("error", "The validation set needs both normal and abnormal images "
                                        f"({validation.n_normal} normal, {validation.n_abnormal} abnormal).", "validation"))
    for (ra, rb), found in (duplicates or {}).items():
        pairs = [(a, b) for a, b in found if _real(a) != _real(b)]  # one file reached twice is reported above
        if not pairs:
            continue
        if ra == rb:
            out.append(Finding("note", f"In the {ROLE_TEXT[ra]} folder, {_n(len(pairs), 'image is an identical copy', 'images are identical copies')} "
                                       "of other images there (each copy counts again in training).", ra,  # type: ignore[arg-type]
                               tuple(f"{a} = {b}" for a, b in pairs[:5])))
        else:
            out.append(Finding("warning", f"{_n(len(pairs), 'image is', 'images are')} identical in the {ROLE_TEXT[ra]} and the "
                                          f"{ROLE_TEXT[rb]} folder under different names; keep each image in one "
                                          "folder.", None, tuple(f"{a} = {b}" for a, b in pairs[:5])))
    for role, s in given.items():
        out.extend(_folder_findings(role, s))  # type: ignore[arg-type]
    out.extend(_view_mix(given))
    rank = {"error": 0, "warning": 1, "note": 2}
    return sorted(out, key=lambda f: rank[f.severity])


def _folder_findings(role: Role, s: FolderSummary) -> list[Finding]:
    out: list[Finding] = []
    name = ROLE_TEXT[role]
    if s.unreadable:
        out.append(Finding("warning", f"{len(s.unreadable):,} file{'s' if len(s.unreadable) != 1 else ''} in the {name} folder "
                                      "cannot be read and will be left out.", role, tuple(f"{p.name}: {why}" for p, why in s.unreadable[:8])))
    lateral = sum(v for k, v in s.views.items() if k in LATERAL_VIEWS)
    if lateral:
        out.append(Finding("warning", f"In the {name} folder, {_n(lateral, 'image is a lateral view', 'images are lateral views')} (DICOM View "
                                      "Position); the detectors are for frontal chest radiographs. Remove them.", role))
    other_parts = {k: v for k, v in s.body_parts.items() if k and k not in CHEST_BODY_PARTS}
    if other_parts:
        listed = ", ".join(f"{k} ×{v}" for k, v in sorted(other_parts.items(), key=lambda kv: -kv[1])[:4])
        out.append(Finding("warning", f"In the {name} folder, {_n(sum(other_parts.values()), 'image is not a chest image', 'images are not chest images')} "
                                      f"by their header (Body Part Examined: {listed}).", role))
    other_mod = {k: v for k, v in s.modalities.items() if k and k not in XRAY_MODALITIES}
    if other_mod:
        listed = ", ".join(f"{k} ×{v}" for k, v in sorted(other_mod.items(), key=lambda kv: -kv[1])[:4])
        out.append(Finding("warning", f"In the {name} folder, {_n(sum(other_mod.values()), 'image is not a radiograph', 'images are not radiographs')} "
                                      f"by their header (Modality: {listed}).", role))
    small = sum(1 for r, c in s.sizes if min(r, c) < SMALL_SIDE)
    if small:
        out.append(Finding("warning", f"In the {name} folder, {_n(small, 'image is', 'images are')} smaller than {SMALL_SIDE} px "
                                      "(thumbnails?).", role))
    odd = sum(1 for r, c in s.sizes if max(r, c) > 2.0 * min(r, c))
    if odd:
        out.append(Finding("warning", f"In the {name} folder, {_n(odd, 'image is', 'images are')} more than twice as long as wide; "
                                      "chest radiographs are roughly square. Are they chest images?", role))
    if s.colour:
        out.append(Finding("note", f"In the {name} folder, {_n(s.colour, 'colour image is', 'colour images are')} converted to grey "
                                   "(as in training and scoring).", role))
    return out


def _view_mix(given: Mapping[str, FolderSummary]) -> list[Finding]:
    """Frontal views (PA / AP) that differ between folders: the detector may learn the view, not disease."""
    shares: dict[str, tuple[float, int]] = {}
    for role, s in given.items():
        pa, ap = s.views.get("PA", 0), s.views.get("AP", 0)
        if pa + ap >= 10:
            shares[role] = (ap / (pa + ap), pa + ap)
    if len(shares) < 2:
        return []
    lo = min(shares.items(), key=lambda kv: kv[1][0])
    hi = max(shares.items(), key=lambda kv: kv[1][0])
    if hi[1][0] - lo[1][0] < 0.3:
        return []
    return [Finding("warning", f"Views differ between folders: {100 * hi[1][0]:.0f} % AP in the {ROLE_TEXT[hi[0]]} "
                               f"folder, {100 * lo[1][0]:.0f} % in the {ROLE_TEXT[lo[0]]} folder (DICOM View Position). "
                               "The detector may flag the view rather than disease.")]


def _n(count: int, one: str, many: str) -> str:
    """ "1 image is a lateral view" / "3 images are lateral views": a count and its words in agreement."""
    return f"{count:,} {one if count == 1 else many}"


def _real(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path


def read_validation(source: Path) -> LabelledValidation:
    """Labelled validation images from a folder (``normal/`` + ``abnormal/``, or a ``labels.csv``) or a CSV.

    Raises:
        ValidationSourceError: nothing labelled can be read from ``source``.
    """
    source = Path(source)
    if source.is_file():
        return _from_csv(source, source)
    if not source.is_dir():
        raise ValidationSourceError(source, "no such folder or file")
    subs = {p.name.lower(): p for p in source.iterdir() if p.is_dir() and not p.name.startswith(".")}
    if "normal" in subs and "abnormal" in subs:
        paths: list[Path] = []
        labels: list[int] = []
        for label, sub in ((0, subs["normal"]), (1, subs["abnormal"])):
            for item in scan_folder(sub):
                if item.error is None:
                    paths.append(Path(item.path).absolute())
                    labels.append(label)
        if not paths:
            raise ValidationSourceError(source, "normal/ and abnormal/ hold no readable radiographs")
        return LabelledValidation(source, "folders", tuple(paths), tuple(labels))
    if (source / LABELS_CSV).is_file():
        return _from_csv(source, source / LABELS_CSV)
    raise ValidationSourceError(source, f"expected subfolders normal/ and abnormal/, or a {LABELS_CSV} "
                                        "(columns path,label; 0 normal, 1 abnormal)")


def _from_csv(source: Path, csv_path: Path) -> LabelledValidation:
    root = csv_path.parent
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValidationSourceError(csv_path, f"cannot be read ({exc})") from exc
    if not rows or "path" not in rows[0] or "label" not in rows[0]:
        raise ValidationSourceError(csv_path, "needs a header with 'path' and 'label' columns")
    paths: list[Path] = []
    labels: list[int] = []
    for i, row in enumerate(rows, start=2):
        lab = (row.get("label") or "").strip()
        if lab == "":
            continue
        if lab not in ("0", "1"):
            raise ValidationSourceError(csv_path, f"line {i}: label must be 0, 1 or empty, got {lab!r}")
        p = Path((row.get("path") or "").strip())
        paths.append(p if p.is_absolute() else root / p)
        labels.append(int(lab))
    if not paths:
        raise ValidationSourceError(csv_path, "no labelled rows")
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise ValidationSourceError(csv_path, f"{len(missing)} listed images are missing (first: {missing[0]})")
    return LabelledValidation(source, "csv", tuple(paths), tuple(labels), csv_path)
