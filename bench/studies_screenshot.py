"""Screenshots of the Studies list and the comparison with an earlier study (under a virtual X server).

    xvfb-run -s "-screen 0 1600x1000x24" .venv/bin/python bench/studies_screenshot.py \
        [--out bench/figures/app_studies.png] [--compare-out bench/figures/app_compare_studies.png]

Synthetic DICOMs written with pydicom (``engine.io.dicom_write``): six patients, each with one
to three studies on different dates (a PA and often a lateral, some with a second series), and a
few PNGs (one study read in full and one partly, to show the reading states); scored with the torch-free local-contrast test detector recalibrated on synthetic
normals (as bench/reading_screenshot.py: a layout demonstration, not a screening model). The
"laterals" are synthetic frontal pixels whose header says LL: the header is what the scope gate
and the Studies list read. Settings, database and library live in ``bench/_work/studies_screen``.
"""
from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "packaging" / "src"), str(REPO)]
WORK = REPO / "bench" / "_work" / "studies_screen"
UID = "1.2.826.0.1.3680043.55"


def _detector(out: Path, normals: list[Path]) -> Path:
    spec = importlib.util.spec_from_file_location("cxr_app_screenshots", REPO / "bench" / "app_screenshots.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module.baseline_detector(out, normals, "synthetic")


def write_studies(folder: Path, size: int = 384) -> None:
    """Six patients' studies as DICOM (see the module docstring), and three PNGs."""
    from cxrscreen.engine.io.dicom_write import write_dicom
    from cxrscreen.engine.synth import write_study
    from cxrscreen.engine.synth.chest import generate_chest

    rng = np.random.default_rng(4)
    lesions = ("nodule", "consolidation", "effusion", None, None, None)
    n = 0
    for p in range(6):
        patient = f"SYN-{p:03d}"
        dates = sorted(rng.choice(np.arange(2015, 2025), size=1 + p % 3, replace=False))
        for s, year in enumerate(dates):
            study = f"{UID}.{p}.{s}"
            views = [("1", "PA")] + ([("2", "LL")] if (p + s) % 3 else []) + ([("3", "AP")] if p == 2 and s else [])
            for series, view in views:
                lesion = lesions[p] if s == len(dates) - 1 and view != "LL" else None
                chest = generate_chest(1000 + 10 * p, size, lesion=lesion).pixels  # the same patient each time
                write_dicom(folder / f"{patient}_{year}_{view}.dcm",
                            np.round(np.clip(chest, 0, 1) * 4095).astype(np.uint16), bits_stored=12,
                            tags={"PatientID": patient, "PatientName": f"SYNTHETIC^PATIENT{p}",
                                  "StudyDate": f"{year}0{1 + p % 9}1{p}", "StudyInstanceUID": study,
                                  "SeriesInstanceUID": f"{study}.{series}", "SOPInstanceUID": f"{study}.{series}.{n}",
                                  "ViewPosition": view, "AccessionNumber": f"A{p}{s}{year}"})
                n += 1
    write_study(folder / "png", 3, 0, size=size, formats=("png",), seed=44)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "figures" / "app_studies.png")
    parser.add_argument("--compare-out", type=Path, default=REPO / "bench" / "figures" / "app_compare_studies.png")
    parser.add_argument("--width", type=int, default=1200)
    args = parser.parse_args()
    from cxrscreen.engine.synth import write_study

    shutil.rmtree(WORK, ignore_errors=True)
    study = WORK / "studies"
    study.mkdir(parents=True)
    write_studies(study)
    write_study(WORK / "normals", 80, 0, size=256, seed=18)
    detector = _detector(WORK / "local_contrast.onnx",
                         sorted(p for p in (WORK / "normals").iterdir() if p.suffix in (".png", ".dcm")))

    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv[:1])
    from cxrscreen.app.library import ModelLibrary
    from cxrscreen.app.main_window import MainWindow
    from cxrscreen.app.settings import AppSettings

    def wait(until, timeout_s: float = 120.0) -> bool:
        t0 = time.monotonic()
        while not until():
            if time.monotonic() - t0 > timeout_s:
                return False
            app.processEvents()
            time.sleep(0.01)
        return True

    def settle() -> None:
        for _ in range(30):
            app.processEvents()
            time.sleep(0.02)

    def save(widget, out: Path, width: int, colours: int = 256) -> None:
        image = widget.grab().toImage()
        if image.width() > width:
            image = image.scaledToWidth(width, Qt.TransformationMode.SmoothTransformation)
        out.parent.mkdir(parents=True, exist_ok=True)
        image.save(str(out))
        from PIL import Image  # a 256-colour palette keeps the README figure small

        Image.open(out).convert("RGB").quantize(colors=colours, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
        print(f"{out}: {image.width()}x{image.height()}")

    w = MainWindow(AppSettings(WORK / "settings.ini"), ModelLibrary(WORK / "library"))
    w.resize(1500, 900)
    w.show()
    w.load_detector(detector, provider="cpu")
    assert wait(lambda: w.detector is not None), "detector did not load"
    w.operating.set_specificity(0.90)
    w.open_paths([study])
    assert wait(lambda: not w.indexing_active and w.model.rowCount() > 0 and not w.is_scoring), "scoring did not finish"
    w.resizeDocks([w.docks["worklist"], w.docks["case"]], [560, 330], Qt.Orientation.Horizontal)
    w.studies.dock.show()
    w.studies.dock.raise_()
    w.reading.resort()
    settle()
    rows = w.studies.panel.rows
    target = next(r for r in rows if r.earlier and r.flagged) if any(r.earlier and r.flagged for r in rows) else \
        next(r for r in rows if r.earlier)
    w.studies.panel._items[target.uid].setExpanded(True)
    assert w.studies.open_study(target.uid)
    assert wait(lambda: w.viewer.case is not None and w.viewer.case.path == target.lead), "study not opened"
    # some reading done, to show the three states: a study read in full, one partly read (its lateral not opened)
    others = [r for r in rows if r.uid != target.uid and len(r.children) > 1]
    for child in others[0].children:
        w.reading.session.set_state(child.path, "read")
    w.reading.session.set_state(others[-1].lead, "read")
    w.studies.open_study(target.uid)
    w.studies.refresh()
    settle()
    save(w, args.out, args.width)
    print("summary:", w.studies.panel.summary_label.text())
    for r in rows:
        print(f"  {r.title:40s} {r.images:22s} {r.score:>8s} {r.flag} earlier={r.earlier}")
    w.studies.panel.compare_button.click()
    cw = w.studies.compare_window
    assert cw is not None
    assert wait(lambda: all(v.case is not None for v in cw.views.values())), "comparison not loaded"
    cw.resize(1400, 760)
    settle()
    cw.views["current"].zoom(1.6)
    settle()
    save(cw, args.compare_out, 900, 64)  # noisy synthetic films: fewer colours, smaller file
    cw.close()
    w.close()
    wait(lambda: not w.isVisible(), 30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
