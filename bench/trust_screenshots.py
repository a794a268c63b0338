"""Screenshots of issue 14's changes in the app, for looking at them (run under a virtual X server).

    xvfb-run -s "-screen 0 1600x1000x24" .venv/bin/python bench/trust_screenshots.py \
        --detector bench/_work/calibration/detector.onnx [--out bench/_work/trust_screens]

The scene: a folder of real Kermany dev_test radiographs (symlinked from ../shared/data, under
nested folders with long names) mixed with generated images that are not frontal chest
radiographs (a photograph, a text page, an inverted radiograph, a lateral DICOM), scored by a
detector trained on the dev protocol (bench/calibration_holds.py makes one). Shots: the window
with an out-of-scope case on screen; the same at a narrow width with the pointer over the image
and a long status message; the detector card; the About box; the add-folders-or-files dialog.
Everything is written under ``--out`` (git-ignored by default): the images are others'.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = next((d / "shared" / "data" for d in (REPO.parent, REPO.parent.parent) if (d / "shared" / "data").is_dir()),
            REPO.parent / "shared" / "data")


def build_scene(folder: Path) -> Path:
    """Real radiographs and out-of-scope images under nested, long folder names."""
    from PIL import Image, ImageDraw

    from cxrscreen.engine.io import read_radiograph
    from cxrscreen.engine.io.dicom_write import write_dicom
    from cxrscreen.engine.synth.chest import generate_chest

    split = json.loads((DATA / "kermany" / "splits" / "dev.json").read_text())
    part = split["dev_test"]
    deep = folder / "Radiology department archive 2024" / "Emergency chest studies (batch 7)"
    deep.mkdir(parents=True, exist_ok=True)
    for i, rel in enumerate(part["normal"][:6] + part["abnormal"][:6]):
        link = deep / f"IM-{i + 1:04d}.jpeg"
        if not link.exists():
            link.symlink_to(DATA / "kermany" / rel)
    other = folder / "Other"
    other.mkdir(exist_ok=True)
    import skimage.data

    Image.fromarray(skimage.data.astronaut()).save(other / "photo-of-a-colleague.png")
    page = Image.new("L", (700, 900), 245)
    d = ImageDraw.Draw(page)
    for y in range(40, 860, 26):
        d.text((30, y), "Report: heart size normal, lungs clear, no effusion. Signed.", fill=0)
    page.save(other / "scanned-report-page.png")
    inv = read_radiograph(DATA / "kermany" / part["normal"][10]).pixels
    Image.fromarray(((1 - inv) * 255).astype(np.uint8)).save(other / "inverted-IM-0013.png")
    write_dicom(other / "lateral-IM-0014.dcm", (generate_chest(3, 512).pixels * 255).astype(np.uint8),
                tags={"ViewPosition": "LL"})
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "_work" / "trust_screens")
    args = parser.parse_args()
    sys.path[:0] = [str(REPO / "packaging" / "src"), str(REPO)]
    from PySide6.QtCore import QPointF, QTimer
    from PySide6.QtWidgets import QApplication, QMessageBox

    app = QApplication(sys.argv[:1])
    app.setStyle("Fusion")
    from cxrscreen.app.about import about_text
    from cxrscreen.app.add_paths_dialog import AddPathsDialog
    from cxrscreen.app.detector_card import DetectorCardDialog
    from cxrscreen.app.library import ModelLibrary
    from cxrscreen.app.main_window import MainWindow
    from cxrscreen.app.settings import AppSettings

    from bench.app_bench_common import process_events_until

    args.out.mkdir(parents=True, exist_ok=True)
    scene = build_scene(args.out / "scene")

    def wait(cond, timeout: float = 120.0) -> bool:
        return process_events_until(app, cond, timeout)

    def save(widget, name: str) -> None:
        wait(lambda: False, 0.8)
        path = args.out / f"{name}.png"
        widget.grab().toImage().save(str(path), "PNG", 0)
        print(path)

    settings_file = args.out / "settings.ini"
    settings_file.unlink(missing_ok=True)
    w = MainWindow(AppSettings(settings_file), ModelLibrary(args.out / "library"))
    w.resize(1440, 900)
    w.show()
    w.load_detector(args.detector, provider="cpu")
    assert wait(lambda: w.detector is not None), "detector did not load"
    w.open_paths([scene])
    assert wait(lambda: not w.indexing_active and w.model.rowCount() > 0 and not w.is_scoring), "scoring did not finish"
    w.operating.set_specificity(0.995)  # needs 200 normals: the panel warns
    rows = [w.worklist.proxy.mapToSource(w.worklist.proxy.index(r, 0)).row() for r in range(w.worklist.proxy.rowCount())]
    oos = next(r for r in rows if w.model.out_of_scope_reason(w.model.record(r)))
    w.worklist.select_path(w.model.record(oos).path)
    wait(lambda: w.viewer.case is not None and w.viewer.case.path == w.worklist.current_path(), 30)
    save(w, "1_window_out_of_scope")

    w.resize(1000, 760)
    w.worklist.select_row(0)
    wait(lambda: w.viewer.case is not None and w.viewer.case.path == w.worklist.current_path(), 30)
    vb = w.viewer.viewbox
    w.viewer._on_mouse_moved(vb.mapViewToScene(QPointF(60, 90)))
    w.statusBar().showMessage("IM-0001.jpeg: out of scope: unlike the chest radiographs this detector was calibrated "
                              "on (distance 6.8, limit 4.1) — a long message that must stop before the counts", 60000)
    save(w, "2_narrow_pointer_status")

    card = DetectorCardDialog(w.detector.meta, args.detector, w.detector.provider, w.detector.provider_note, w)
    card.resize(700, 900)
    card.show()
    save(card, "3_detector_card")
    card.close()

    box = QMessageBox(QMessageBox.Icon.NoIcon, "About cxrscreen", about_text(), QMessageBox.StandardButton.Ok, w)
    box.show()
    save(box, "4_about")
    box.close()

    dlg = AddPathsDialog(w, scene)
    dlg.resize(900, 560)
    dlg.show()
    save(dlg, "5_add_dialog")
    dlg.reject()

    w.close()
    wait(lambda: not w.isVisible(), 30)
    QTimer.singleShot(0, lambda: None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
