"""The whole retraining flow, for real, through the desktop app (run under a virtual X server).

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python bench/app_retrain_real.py \
        [--epochs N] [--threads T] [--screenshots DIR] [--compare-with OTHER.onnx] [--resume] [--name NAME]

1. Folders of symlinks under ``bench/_work/app_retrain/`` (git-ignored; images are never
   copied) for the development protocol of ``../shared/data/kermany/splits/dev.json``:
   ``normal/`` = ``train.known_normal`` (D_n), ``unlabeled/`` = D_u at AR 0.6 (the first 200 of
   ``unlabeled_pool.normal`` and the first 300 of ``unlabeled_pool.abnormal``, flat names: no
   label reaches the app), and ``dev_test/normal`` + ``dev_test/abnormal`` as the panel's
   labelled validation folder (evaluation only; nothing is chosen on it).
2. The real app (:class:`app.main_window.MainWindow`, settings and model library under
   ``bench/_work/app_retrain/``): Detector ▸ New detector…, the folders dropped on their drop
   zones (Qt drop events), the paper preset (DDAD with AE-U, K = 3, 250 epochs; ``--epochs``
   overrides it to test this script), Train. The engine trains in its own process.
3. Waits for the detector to be exported, verified, validated and registered in the library.
4. Evaluates the registered detector on dev_test with the engine itself:
   ``[engine] eval --model <library>/model.onnx --split dev.json --part dev_test``.
5. Writes timing, the card's essentials and dev_test AUROC / AP (with 95 % intervals) to
   ``bench/results/app_retrain/<name>.json``.

With ``--screenshots DIR`` it saves the sequence: folders dropped, training in progress, the
model card after (panel and library), and with ``--compare-with`` the dev_test worklist scored
by both detectors in the comparison scatter. ``--resume`` resumes an unfinished run of the
same name (listed by the panel) instead of starting a new one.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "kermany"
SPLIT = DATA / "splits" / "dev.json"
WORK = REPO / "bench" / "_work" / "app_retrain"
AR = 0.6
POOL = 500


def build_folders(split_file: Path, root: Path, out: Path) -> dict[str, Path]:
    """Symlink folders for D_n, D_u (AR 0.6) and dev_test; returns them by role."""
    split = json.loads(split_file.read_text())
    n_abn, n_norm = round(POOL * AR), round(POOL * (1 - AR))
    lists = {
        "normal": split["train"]["known_normal"],
        "unlabeled": split["unlabeled_pool"]["normal"][:n_norm] + split["unlabeled_pool"]["abnormal"][:n_abn],
        "dev_test/normal": split["dev_test"]["normal"],
        "dev_test/abnormal": split["dev_test"]["abnormal"],
    }
    folders = {}
    for role, rels in lists.items():
        folder = out / role
        folder.mkdir(parents=True, exist_ok=True)
        names = [Path(r).name for r in rels]
        if len(set(names)) != len(names):
            raise SystemExit(f"{role}: file names collide when flattened")
        wanted = set(names)
        for stale in folder.iterdir():
            if stale.is_symlink() and stale.name not in wanted:
                stale.unlink()
        for rel, name in zip(rels, names):
            link = folder / name
            target = (root / rel).resolve()
            if not target.is_file():
                raise SystemExit(f"missing image {target}")
            if link.is_symlink() and Path(os.readlink(link)) == target:
                continue
            if link.exists() or link.is_symlink():
                link.unlink()
            link.symlink_to(target)
        folders[role] = folder
    folders["validation"] = out / "dev_test"
    return folders


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="override the paper preset's 250 (tests of this script)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: one per core)")
    parser.add_argument("--name", default=None, help="detector name and result file stem (default: from the settings)")
    parser.add_argument("--screenshots", type=Path, default=None, help="save the screenshot sequence here")
    parser.add_argument("--compare-with", type=Path, default=None,
                        help="another detector: score dev_test with both and screenshot the comparison")
    parser.add_argument("--resume", action="store_true", help="resume an unfinished run of the same name")
    parser.add_argument("--size", default="1560x960", help="main window size WxH")
    parser.add_argument("--timeout-h", type=float, default=6.0)
    args = parser.parse_args()
    if not SPLIT.is_file():
        print(f"the development split is not at {SPLIT}", file=sys.stderr)
        return 2
    name = args.name or (f"app_ddad_aeu_paper_ar{AR}" + (f"_e{args.epochs}" if args.epochs else "")
                         + (f"_t{args.threads}" if args.threads else ""))
    folders = build_folders(SPLIT, DATA, WORK / "folders")
    sys.path[:0] = [str(REPO / "packaging" / "src"), str(REPO)]
    from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
    from PySide6.QtGui import QDragEnterEvent, QDropEvent
    from PySide6.QtWidgets import QApplication

    from cxrscreen.app import pyside_check
    pyside_check.check()
    app = QApplication(sys.argv[:1])
    app.setStyle("Fusion")
    from cxrscreen.app.engine_process import default_engine_command
    from cxrscreen.app.library import ModelLibrary
    from cxrscreen.app.main_window import MainWindow
    from cxrscreen.app.settings import AppSettings

    WORK.mkdir(parents=True, exist_ok=True)
    settings_file = WORK / "settings.ini"
    settings_file.unlink(missing_ok=True)
    library = ModelLibrary(WORK / "data" / "models")
    w = MainWindow(AppSettings(settings_file), library)
    w.resize(*(int(v) for v in args.size.split("x")))
    w.show()
    shots: list[str] = []

    def pump(seconds: float) -> None:
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            app.processEvents()
            time.sleep(0.02)

    def wait(cond, timeout: float) -> bool:
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            app.processEvents()
            if cond():
                return True
            time.sleep(0.05)
        return False

    def shoot(widget, file_name: str) -> None:
        if args.screenshots is None:
            return
        args.screenshots.mkdir(parents=True, exist_ok=True)
        pump(0.8)
        path = args.screenshots / file_name
        widget.grab().toImage().save(str(path), "PNG", 0)
        shots.append(str(path))
        print(f"screenshot {path}", flush=True)

    def drop(zone, folder: Path) -> None:
        """Drag a folder onto a drop zone and drop it (Qt delivers a drop only after an accepted enter)."""
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(str(folder))])
        enter = QDragEnterEvent(QPoint(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                                Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(zone, enter)
        if not enter.isAccepted():
            raise SystemExit(f"the drop zone refused {folder}")
        event = QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                           Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(zone, event)
        if zone.path != folder:
            raise SystemExit(f"the drop of {folder} did not reach its zone")

    panel = w.model_tools.open_panel()
    panel.resize(1500, 960)
    job = None
    if args.resume:
        records = [panel.unfinished_list.item(i).data(Qt.ItemDataRole.UserRole)
                   for i in range(panel.unfinished_list.count())]
        mine = [r for r in records if r.spec.name == name]
        if mine:
            print(f"resuming {mine[0].spec.run_dir} ({mine[0].progress})", flush=True)
            panel._resume(mine[0].spec)  # the labels are read in a worker first
            wait(lambda: panel.job is not None and panel.job.running, 300)
            job = panel.job
    if job is None:
        for role in ("normal", "unlabeled", "validation"):
            drop(panel.zones[role], folders[role])
        panel.set_preset("paper")
        if args.epochs is not None:
            panel.set_option("epochs", args.epochs)
        if args.threads:
            panel.set_option("threads", args.threads)
        panel.name_edit.setText(name)
        panel._on_name_edited(name)
        if not wait(panel.can_train, 600):
            print("the panel does not allow training:", [f.text for f in panel.findings], file=sys.stderr)
            return 1
        wait(lambda: panel.duplicates is not None, 300)
        panel._update()
        shoot(panel, "app_retrain_1_folders.png")
        load_before = os.getloadavg()
        t_click = time.monotonic()
        panel.train_button.click()
        job = panel.job
    else:
        load_before = os.getloadavg()
        t_click = time.monotonic()
    assert job is not None
    stages: dict[str, float] = {}
    job.stage_changed.connect(lambda s: stages.setdefault(s, round(time.monotonic() - t_click, 1)))
    pv = panel.progress_view
    in_progress_at = 3 if (args.epochs or 250) >= 4 else 1
    if wait(lambda: len(pv.points.get("loss_a", ([], []))[0]) >= in_progress_at or not job.running, 3600):
        if job.running:
            shoot(panel, "app_retrain_2_training.png")
    ok = wait(lambda: not job.running, args.timeout_h * 3600)
    t_done = time.monotonic() - t_click
    if not ok or panel.last_entry is None:
        failure = panel.last_failure
        print(f"no detector registered: {failure.title + ': ' + failure.message if failure else 'timed out'}",
              file=sys.stderr)
        if failure is not None:
            print(failure.log_tail[-3000:], file=sys.stderr)
        return 1
    entry = panel.last_entry
    print(f"registered {entry.name} ({entry.model_id}) after {t_done:.0f} s", flush=True)
    pv.log_view.verticalScrollBar().setValue(pv.log_view.verticalScrollBar().maximum())
    shoot(panel, "app_retrain_3_card.png")
    lib = w.model_tools.open_library()
    lib.resize(1300, 820)
    lib.select(entry.model_id)
    shoot(lib, "app_retrain_4_library.png")
    lib.close()

    # the engine's own evaluation of the registered file on dev_test
    results = REPO / "bench" / "results" / "app_retrain"
    results.mkdir(parents=True, exist_ok=True)
    eval_out = WORK / "eval" / f"{name}.json"
    eval_out.parent.mkdir(parents=True, exist_ok=True)
    cmd = default_engine_command() + ["eval", "--model", str(entry.path), "--split", str(SPLIT), "--part", "dev_test",
                                      "--out", str(eval_out), "--provider", "cpu"]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    eval_s = time.monotonic() - t0
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return 1
    report = json.loads(eval_out.read_text())
    print(proc.stdout.strip(), flush=True)

    if args.compare_with is not None and args.screenshots is not None:
        w.model_tools.use(entry)
        w.open_paths([folders["validation"]])
        wait(lambda: w.detector is not None and w.detector.meta.model_id == entry.model_id and not w.indexing_active
             and not w.is_scoring and w.model.counts()["scored"] == w.model.counts()["readable"] > 0, 1200)
        w.load_detector(args.compare_with, provider="cpu")
        wait(lambda: w.detector is not None and w.detector.meta.model_id != entry.model_id, 120)
        wait(lambda: not w.is_scoring and w.model.counts()["scored"] == w.model.counts()["readable"], 1200)
        w.worklist.select_row(0)
        pump(2.0)
        shoot(w, "app_retrain_5_worklist.png")
        d = w.model_tools.open_compare()
        if d is not None:
            d.resize(960, 760)
            x = entry.model_id
            y = next(mid for mid in d.models if mid != x)
            d.set_pair(x, y)
            shoot(d, "app_retrain_6_compare.png")
            d.close()

    card = entry.card
    job_card = card.get("training_job", {})
    out = {
        "name": name,
        "protocol": {"split": str(SPLIT), "anomaly_rate": AR, "normal_folder": str(folders["normal"]),
                     "unlabeled_folder": str(folders["unlabeled"]), "validation_folder": str(folders["validation"])},
        "preset": job_card.get("preset"),
        "settings": job_card.get("settings"),
        "images_used": job_card.get("images_used"),
        "model_id": entry.model_id,
        "model_file_mb": round(entry.path.stat().st_size / 2**20, 1),
        "device": job_card.get("device"),
        "timing_s": {"click_to_registered": round(t_done, 1), "stages_started_at": stages,
                     "train_seconds_engine": job_card.get("train_seconds"), "engine_eval_dev_test": round(eval_s, 1)},
        "app_validation_dev_test": {k: (card.get("validation") or {}).get(k) for k in ("n", "auroc", "ap")},
        "engine_eval_dev_test": {k: report.get(k) for k in ("n", "n_normal", "n_abnormal", "auroc", "ap",
                                                             "sensitivity_at_specificity")}
        | {"at_95_specificity_on_calibration_normals": {k: report["operating_points"]["normals"].get(k)
                                                        for k in ("threshold", "sensitivity", "specificity")}},
        "command_in_app": job_card.get("command"),
        "environment": job_card.get("environment"),
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "screenshots": shots,
    }
    path = results / f"{name}.json"
    path.write_text(json.dumps(out, indent=2, default=str))
    print(f"wrote {path}")
    a, ap = report["auroc"], report["ap"]
    print(f"dev_test AUROC {a['value']:.4f} [{a['ci95'][0]:.4f}, {a['ci95'][1]:.4f}], AP {ap['value']:.4f}; "
          f"click to registered {t_done / 60:.1f} min", flush=True)
    w.close()
    wait(lambda: not w.isVisible(), 120)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
