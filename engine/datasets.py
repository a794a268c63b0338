"""Training data for dual-distribution detectors: which files, and their preprocessed pixels.

Two ways to name the data:
- folders: a known-normal folder D_n and an unlabeled folder D_u (recursive, every readable
  radiograph; unreadable files are skipped and reported);
- a split file in the development-protocol format (``kermany/splits/dev.json``): D_n =
  ``train.known_normal``; D_u at anomaly rate AR = the first round(500·(1−AR)) of
  ``unlabeled_pool.normal`` plus the first round(500·AR) of ``unlabeled_pool.abnormal``. The pool
  labels only choose the files; no label reaches a method. A weakly supervised method's K
  confirmed-abnormal images ("shots") come from the split's ``fewshot.abnormal``, drawn across
  patients (:func:`draw_across_patients`).

A fixed fraction of the known normals (10 % by default) is held out, never trained on, and used
to calibrate the detector's scores. This is a deviation from the DDAD paper, which trains on all
of D_n: a clinician needs "percentile among normals" and specificity-based thresholds that are
not measured on training images. The hold-out is made of whole patients
(:func:`split_calibration`): a held-out image whose patient has another image in training is
not an unseen normal.

Torch-free (the app's retraining panel counts and checks folders with it).
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from cxrscreen.engine.io import RadiographReadError, read_radiograph, scan_folder
from cxrscreen.engine.preprocess import PreprocessSpec, preprocess

logger = logging.getLogger(__name__)

SPLIT_POOL_SIZE = 500  # |D_u| in the development protocol
# written beside the confirmed_abnormal/ folder a reader exports from the worklist (app.reader_sets)
READER_SETS_FILE = "reader_sets.json"
_KERMANY_PATIENT = re.compile(r"(person\d+)_")
# Kermany/ZhangLab normals: IM-0545-0001.jpeg, IM-0545-0001-0002.jpeg, NORMAL2-IM-0429-0001.jpeg
_KERMANY_NORMAL_PATIENT = re.compile(r"((?:NORMAL2-)?IM-\d+)-\d")


class DataError(ValueError):
    """The training data cannot be assembled (empty folder, missing files, bad split file)."""


@dataclass(frozen=True)
class SkippedFile:
    path: str
    reason: str


@dataclass
class TrainingData:
    """File lists of one training run (absolute paths, stable order).

    Attributes:
        normal_train: known normals used for training.
        normal_calibration: known normals held out for calibration (never trained on).
        unlabeled: D_u.
        abnormal: confirmed-abnormal images (weakly supervised methods; empty for the others).
        source: how the lists were made ({"kind": "folders"|"split", ...}).
        skipped: unreadable files left out, with reasons.
    """

    normal_train: list[Path]
    normal_calibration: list[Path]
    unlabeled: list[Path]
    source: dict[str, Any] = field(default_factory=dict)
    skipped: list[SkippedFile] = field(default_factory=list)
    abnormal: list[Path] = field(default_factory=list)

    def without_unlabeled(self, why: str = "not used (one-class method)") -> TrainingData:
        """The same lists with no D_u, for a method that does not use it; ``why`` is recorded in the source."""
        return replace(self, unlabeled=[], source={**self.source, "unlabeled": why})

    def role_counts(self) -> dict[str, int]:
        """Images per data role ("normal" counts the held-out ones too) and per normal part."""
        return {"normal": len(self.normal_train) + len(self.normal_calibration), "unlabeled": len(self.unlabeled),
                "abnormal": len(self.abnormal), "normal_train": len(self.normal_train),
                "normal_calibration": len(self.normal_calibration)}

    def summary(self) -> dict[str, Any]:
        """Counts and hashes, stored in the run and in the detector metadata."""
        return {
            "normal_train": len(self.normal_train),
            "normal_calibration": len(self.normal_calibration),
            "unlabeled": len(self.unlabeled),
            "abnormal": len(self.abnormal),
            **({"anomalies": self.source["abnormal"]} if self.abnormal and "abnormal" in self.source else {}),
            "roles": {k: v for k, v in self.role_counts().items() if k in ("normal", "unlabeled", "abnormal")},
            "skipped": len(self.skipped),
            "file_list_sha256": self.file_list_hash(),
            "source": self.source,
        }

    def file_list_hash(self) -> str:
        """sha256 over the file lists (file names relative to their common root, in order; the
        abnormal list only when there is one, so runs without it keep their hash)."""
        h = hashlib.sha256()
        root = _common_root(self.normal_train + self.normal_calibration + self.unlabeled + self.abnormal)
        lists = [("normal_train", self.normal_train), ("normal_calibration", self.normal_calibration), ("unlabeled", self.unlabeled)]
        if self.abnormal:
            lists.append(("abnormal", self.abnormal))
        for name, paths in lists:
            h.update(f"[{name}]\n".encode())
            for p in paths:
                h.update((_relative(p, root) + "\n").encode())
        return h.hexdigest()

    def to_json(self) -> dict[str, Any]:
        """The lists with absolute paths (a run folder's data.json reads the same from any directory)."""
        return {
            "normal_train": [str(Path(p).absolute()) for p in self.normal_train],
            "normal_calibration": [str(Path(p).absolute()) for p in self.normal_calibration],
            "unlabeled": [str(Path(p).absolute()) for p in self.unlabeled],
            "abnormal": [str(Path(p).absolute()) for p in self.abnormal],
            "source": self.source,
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "TrainingData":
        return cls(
            normal_train=[Path(p) for p in d["normal_train"]],
            normal_calibration=[Path(p) for p in d["normal_calibration"]],
            unlabeled=[Path(p) for p in d["unlabeled"]],
            source=dict(d.get("source", {})),
            skipped=[SkippedFile(s["path"], s["reason"]) for s in d.get("skipped", [])],
            abnormal=[Path(p) for p in d.get("abnormal", [])],
        )


def _common_root(paths: list[Path]) -> Path | None:
    if not paths:
        return None
    parts = [p.parts for p in paths]
    common = []
    for items in zip(*parts):
        if all(i == items[0] for i in items):
            common.append(items[0])
        else:
            break
    return Path(*common) if common else None


def _relative(p: Path, root: Path | None) -> str:
    if root is None:
        return p.as_posix()
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return p.as_posix()


def split_calibration(normals: list[Path], fraction: float, seed: int = 0,
                      patients: dict[Path, str] | None = None) -> tuple[list[Path], list[Path]]:
    """Hold out ``fraction`` of the normals (at least 1, at most all but 2) for calibration, made
    of whole patients: no held-out image has a patient with an image in training.

    ``patients`` maps an image to its patient key (DICOM PatientID); images it does not name are
    keyed by :func:`patient_of` (their file name). Patients are drawn in a seeded random order
    (each patient placed by its first image in sorted order) and held out whole while they fit
    in the target count; a patient with more images than fit stays in training. When every image
    is a patient of its own this is exactly the per-image draw of earlier releases, so their
    runs keep their hold-out. When no patient fits (e.g. one anonymised PatientID for all), the
    hold-out falls back to single images: :func:`hold_out_unit` says which it was.

    The choice depends only on the sorted file list, the patient keys and ``seed``, not on the
    training seed, so repeated trainings of the same data calibrate on the same images.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"calibration fraction must be in [0, 1), got {fraction!r}")
    ordered = sorted(normals)
    if fraction == 0.0:
        return ordered, []
    n_cal = int(round(fraction * len(ordered)))
    n_cal = min(max(n_cal, 1), len(ordered) - 2)
    if n_cal < 1:
        raise DataError(f"need at least 3 known-normal images to hold some out for calibration, got {len(ordered)}")
    groups = _patient_groups(ordered, patients)
    perm = np.random.default_rng(seed).permutation(len(groups))
    cal_idx: set[int] = set()
    for g in perm:
        members = groups[int(g)]
        if len(cal_idx) + len(members) <= n_cal:
            cal_idx.update(members)
            if len(cal_idx) == n_cal:
                break
    if not cal_idx:  # no patient fits whole: single images, as before patients were known
        cal_idx = set(np.random.default_rng(seed).permutation(len(ordered))[:n_cal].tolist())
    train = [p for i, p in enumerate(ordered) if i not in cal_idx]
    cal = [p for i, p in enumerate(ordered) if i in cal_idx]
    return train, cal


def _patient_groups(ordered: list[Path], patients: dict[Path, str] | None) -> list[list[int]]:
    """Indices into ``ordered`` grouped by patient, the groups in the order of their first image."""
    keys: dict[str, list[int]] = {}
    for i, p in enumerate(ordered):
        keys.setdefault(_patient_key(p, patients), []).append(i)
    return sorted(keys.values(), key=lambda g: g[0])


def _patient_key(path: Path, patients: dict[Path, str] | None) -> str:
    """"id:" a DICOM PatientID; "name:" a patient read from a known file-name pattern, within its
    folder (a pattern such as IM-0001-… may restart in every exported folder); "file:" none known,
    the image is a patient of its own."""
    given = (patients or {}).get(path)
    if given:
        return f"id:{given}"
    patient = patient_of(path)
    return f"name:{Path(path).parent / patient}" if patient != Path(path).name else f"file:{path}"


def hold_out_unit(normal_train: Sequence[Path], normal_calibration: Sequence[Path],
                  patients: dict[Path, str] | None = None) -> dict[str, Any]:
    """How a hold-out was made, for the run and the detector card (counts only, nothing identifying):

    - ``{"unit": "patient", "patients": held-out patients, "of": all patients, "key": what identified
      them}`` when patients are known (DICOM PatientID or a file-name pattern) and no held-out
      patient has a training image;
    - ``{"unit": "image", "shared": n}`` when n held-out images share a patient with training images
      (one patient too large to hold out whole, e.g. one anonymised PatientID for all);
    - ``{"unit": "image", "shared": 0, "patients_known": False}`` when the files name no patient.
    """
    train_keys = {_patient_key(Path(p), patients) for p in normal_train}
    cal_keys = [_patient_key(Path(p), patients) for p in normal_calibration]
    shared = sum(k in train_keys for k in cal_keys)
    if shared:
        return {"unit": "image", "shared": shared}
    kinds = {k.split(":", 1)[0] for k in cal_keys} | {k.split(":", 1)[0] for k in train_keys}
    if kinds == {"file"}:
        return {"unit": "image", "shared": 0, "patients_known": False}
    words = [w for kind, w in (("id", "DICOM PatientID"), ("name", "file-name pattern"),
                               ("file", "one patient per other image")) if kind in kinds]
    return {"unit": "patient", "patients": len(set(cal_keys)), "of": len(set(cal_keys) | train_keys),
            "key": ", ".join(words)}


def _readable_images(folder: Path, patients: dict[Path, str] | None = None) -> tuple[list[Path], list[SkippedFile]]:
    """The readable radiographs under ``folder`` and the unreadable ones; a DICOM file's
    PatientID goes into ``patients`` when given."""
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    paths: list[Path] = []
    skipped: list[SkippedFile] = []
    for item in scan_folder(folder):
        if item.error is not None:
            skipped.append(SkippedFile(str(item.path), item.error.reason))
        else:
            paths.append(Path(item.path))
            if patients is not None and item.meta is not None and (item.meta.patient_id or "").strip():
                patients[Path(item.path)] = item.meta.patient_id.strip()
    return paths, skipped


def from_folders(normal_dir: Path, unlabeled_dir: Path | None, calibration_fraction: float = 0.1,
                 abnormal_dir: Path | None = None) -> TrainingData:
    """D_n from ``normal_dir``, D_u from ``unlabeled_dir`` (None: the normal-only setting) and the
    confirmed-abnormal images from ``abnormal_dir`` (None: none); a file may be in one folder only."""
    patients: dict[Path, str] = {}
    normal, skipped = _readable_images(Path(normal_dir), patients)
    if len(normal) < 3:
        raise DataError(f"{normal_dir}: found {len(normal)} readable radiographs; at least 3 known normals are needed")
    unlabeled: list[Path] = []
    if unlabeled_dir is not None:
        unlabeled, skipped_u = _readable_images(Path(unlabeled_dir))
        skipped += skipped_u
        overlap = set(p.resolve() for p in normal) & set(p.resolve() for p in unlabeled)
        if overlap:
            raise DataError(
                f"{len(overlap)} files are in both the normal and the unlabeled folder (e.g. {sorted(overlap)[0]}); "
                "a file must be in one of them"
            )
    abnormal: list[Path] = []
    if abnormal_dir is not None:
        abnormal, skipped_a = _readable_images(Path(abnormal_dir))
        skipped += skipped_a
        for other, name in ((normal, "normal"), (unlabeled, "unlabeled")):
            overlap = set(p.resolve() for p in other) & set(p.resolve() for p in abnormal)
            if overlap:
                raise DataError(f"{len(overlap)} files are in both the {name} and the abnormal folder (e.g. "
                                f"{sorted(overlap)[0]}); a file must be in one of them")
    train, cal = split_calibration(normal, calibration_fraction, patients=patients)
    source: dict[str, Any] = {"kind": "folders", "normal_dir": str(Path(normal_dir).absolute()),
              "unlabeled_dir": str(Path(unlabeled_dir).absolute()) if unlabeled_dir else None}
    if cal:
        source["hold_out"] = hold_out_unit(train, cal, patients)
    if abnormal_dir is not None:
        source["abnormal_dir"] = str(Path(abnormal_dir).absolute())
        source["abnormal"] = {"from": "reader marks" if _from_reader_marks(Path(abnormal_dir)) else "folder",
                              "k": len(abnormal)}
    return TrainingData(train, cal, sorted(unlabeled), source, skipped, sorted(abnormal))


def _from_reader_marks(folder: Path) -> bool:
    """Whether ``folder`` is a reader's exported ``confirmed_abnormal/`` set (its ``reader_sets.json``
    beside it says so)."""
    summary = folder.parent / READER_SETS_FILE
    if folder.name != "confirmed_abnormal" or not summary.is_file():
        return False
    try:
        return json.loads(summary.read_text(encoding="utf-8")).get("source") == "reader marks"
    except (OSError, ValueError, AttributeError):
        return False


def patient_of(path: str | Path) -> str:
    """The patient an image belongs to, as far as its file name tells: Kermany/ZhangLab's
    ``person<N>_`` prefix (pneumonia) or ``IM-<N>-`` / ``NORMAL2-IM-<N>-`` (normals: all the
    images numbered IM-0545-…, which its labels file splits into IM-0545 and IM-0545-0001, as
    one patient); any other file counts as a patient of its own."""
    name = Path(path).name
    m = _KERMANY_PATIENT.match(name) or _KERMANY_NORMAL_PATIENT.match(name)
    return m.group(1) if m else name


def draw_across_patients(paths: Sequence[str], seed: int) -> list[str]:
    """All of ``paths`` in draw order: the patients (:func:`patient_of`) in a seeded random order,
    one image of each in turn (each patient's images also in a seeded random order). The first K
    are the K shots, so the K-subsets of one seed are nested and spread over as many patients as
    K allows."""
    rng = np.random.default_rng(seed)
    patients: dict[str, list[str]] = {}
    for p in paths:
        patients.setdefault(patient_of(p), []).append(p)
    queues = [list(rng.permutation(patients[k])) for k in rng.permutation(sorted(patients))]
    drawn: list[str] = []
    while any(queues):
        for q in queues:
            if q:
                drawn.append(str(q.pop(0)))
    return drawn


def default_split_root(split_file: Path) -> Path:
    """Paths in a split file are relative to the data set folder: the parent of ``splits/``."""
    split_file = Path(split_file)
    return split_file.parent.parent if split_file.parent.name == "splits" else split_file.parent


def from_split(
    split_file: Path, anomaly_rate: float, root: Path | None = None, calibration_fraction: float = 0.1,
    shots: int | None = None, shots_seed: int = 0,
) -> TrainingData:
    """D_n and D_u from a development-protocol split file at anomaly rate ``anomaly_rate``, and
    ``shots`` confirmed-abnormal images (None: none) from its ``fewshot.abnormal``, drawn across
    patients with ``shots_seed`` (:func:`draw_across_patients`; the shots of one seed are nested)."""
    split_file = Path(split_file)
    if not 0.0 <= anomaly_rate <= 1.0:
        raise ValueError(f"anomaly rate must be in [0, 1], got {anomaly_rate!r}")
    if shots is not None and (isinstance(shots, bool) or not isinstance(shots, int) or shots < 1):
        raise ValueError(f"shots must be a whole number of at least 1, got {shots!r}")
    try:
        d = json.loads(split_file.read_text())
        known = d["train"]["known_normal"]
        pool_normal = d["unlabeled_pool"]["normal"]
        pool_abnormal = d["unlabeled_pool"]["abnormal"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(f"{split_file}: not a readable split file with train.known_normal and unlabeled_pool ({exc})") from exc
    root = Path(root) if root is not None else default_split_root(split_file)
    n_abn = int(round(SPLIT_POOL_SIZE * anomaly_rate))
    n_norm = int(round(SPLIT_POOL_SIZE * (1.0 - anomaly_rate)))
    if n_norm > len(pool_normal) or n_abn > len(pool_abnormal):
        raise DataError(f"{split_file}: the unlabeled pool has {len(pool_normal)} normal / {len(pool_abnormal)} abnormal images, "
                        f"AR {anomaly_rate} needs {n_norm} / {n_abn}")
    normal = [root / p for p in known]
    unlabeled = [root / p for p in pool_normal[:n_norm] + pool_abnormal[:n_abn]]
    abnormal: list[Path] = []
    if shots is not None:
        fewshot = d.get("fewshot", {}).get("abnormal") if isinstance(d.get("fewshot"), dict) else None
        if not isinstance(fewshot, list) or not fewshot:
            raise DataError(f"{split_file}: no fewshot.abnormal list to draw --shots {shots} confirmed-abnormal "
                            "images from")
        if shots > len(fewshot):
            raise DataError(f"{split_file}: fewshot.abnormal has {len(fewshot)} images; --shots {shots} asks for more "
                            f"(at most {len(fewshot)})")
        abnormal = [root / p for p in draw_across_patients(fewshot, shots_seed)[:shots]]
        overlap = {p.resolve() for p in abnormal} & {p.resolve() for p in normal + unlabeled}
        if overlap:
            raise DataError(f"{split_file}: {len(overlap)} fewshot.abnormal images are also known normals or "
                            f"unlabeled (e.g. {sorted(overlap)[0]}); a file must be in one part")
    missing = [p for p in normal + unlabeled + abnormal if not p.is_file()]
    if missing:
        raise DataError(f"{len(missing)} files named in {split_file} are missing under {root} (first: {missing[0]})")
    train, cal = split_calibration(normal, calibration_fraction)
    source: dict[str, Any] = {
        "kind": "split",
        "split_file": str(split_file),
        "root": str(root),
        "anomaly_rate": anomaly_rate,
    }
    if cal:
        source["hold_out"] = hold_out_unit(train, cal)
    if shots is not None:
        source["abnormal"] = {"from": "split fewshot.abnormal", "k": shots, "of": len(fewshot), "seed": shots_seed,
                              "draw": "across patients, nested"}
    # D_u keeps the protocol's order (normal part first): the order is irrelevant to training,
    # which shuffles, and keeping it makes the file-list hash match the protocol's definition.
    # The shots keep their draw order, for the same reason.
    return TrainingData(train, cal, unlabeled, source, [], abnormal)


def load_images(
    paths: Iterable[Path],
    spec: PreprocessSpec,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 2,
) -> np.ndarray:
    """Read and preprocess files into an (N, 1, S, S) float32 array (order kept).

    Raises:
        DataError: a file cannot be read (the lists were built from readable files, so this
            means it changed or vanished since).
    """
    paths = list(paths)
    out = np.empty((len(paths), 1, spec.size, spec.size), dtype=np.float32)

    def one(i: int) -> None:
        try:
            out[i, 0] = preprocess(read_radiograph(paths[i]).pixels, spec)
        except RadiographReadError as exc:
            raise DataError(f"cannot read a training image: {exc}") from exc

    done = 0
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for _ in pool.map(one, range(len(paths))):
            done += 1
            if progress is not None and (done % 64 == 0 or done == len(paths)):
                progress(done, len(paths))
    return out
