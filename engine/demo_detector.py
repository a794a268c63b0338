"""`cxrscreen demo-detector --out FILE`: a small real DDAD detector trained on synthetic radiographs.

For the built-in demo only (the app runs it when its model library is empty): it writes a
synthetic training set (known normals + an unlabeled mix with lesions), trains DDAD (AE-U,
K = 2, 150 epochs at 64 px, about two minutes on two CPU cores), and exports the detector
with the usual metadata and parity check. The detector's name says it is a synthetic demo; it
is not for clinical images.

Deviation from the paper's recipe, for the demo only: the detector scores with the **rec** map
(reconstruction error of the normal-only module B, divided by its predicted variance), not
inter. On these small synthetic sets inter stays at AUROC 0.56-0.64 whatever the setting, while
rec reaches 0.84 on chests of anatomical variation 0.5 after 150 epochs
(bench/demo_detector_maps.py; bench/RESULTS.md). The app writes its demo study with the same
``--variation``. The training chests carry side markers, as the demo study's do, and 20 % of the
known normals (32) are held out to calibrate, enough for a 95 % specificity threshold; the demo
study's lesions are as dense as those of the unlabeled set here (strength 1.5). A second
deviation: the image score is the mean of the rec map's highest 0.5 % of pixels (20 of 64 × 64),
not the whole map's mean: a small lesion moves a few pixels of the map a lot and its mean a
little. The fraction was chosen on 200 held-out synthetic chests of the demo's kind, not on the
demo study (``bench/demo_pooling.py``: AUROC 0.992 vs 0.945 for the mean); the demo study's
figures are in bench/RESULTS.md. A third: the detector stores no reference for the acquisition
check (:func:`_without_acquisition_reference` says why).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from cxrscreen.engine.cli_args import float_range, int_range, non_negative_int, positive_int

DEMO_NAME = "Demo detector (synthetic images; not for clinical use)"
# the training needs a few known normals per module and some held out for calibration
MIN_NORMALS = 80
# the image score: mean of the rec map's highest 0.5 % of pixels (bench/demo_pooling.py chose it)
SCORE_TOP_FRACTION = 0.005


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, metavar="ONNX", help="detector file to write")
    parser.add_argument("--epochs", type=positive_int, default=150, help="default: %(default)s")
    parser.add_argument("--variation", type=float_range(0.0, 2.0), default=0.5,
                        help="anatomical variation of the synthetic chests, as in the demo study (default: %(default)s)")
    parser.add_argument("--normals", type=_normals, default=160,
                        help=f"synthetic known normals, at least {MIN_NORMALS} (default: %(default)s)")
    parser.add_argument("--members", type=int_range(2, 16), default=2,
                        help="networks per module, K from 2 to 16 (default: %(default)s)")
    # above 0.2 of the minimum 80 normals, module B would have less than one batch of 64
    parser.add_argument("--calibration-fraction", type=float_range(0.05, 0.2), default=0.2,
                        help="known normals held out to calibrate, in [0.05, 0.2]; 0.2 of 160 = 32, enough for 95 %% "
                             "specificity (default: %(default)s)")
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--work", type=Path, default=None, help="keep the training data and run here (default: a temp folder)")
    parser.add_argument("--progress", choices=("auto", "json", "bar", "none"), default="auto")
    parser.add_argument("--overwrite", action="store_true")


def _normals(text: str) -> int:
    value = positive_int(text)
    if value < MIN_NORMALS:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_NORMALS} synthetic normals, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    from cxrscreen.engine.cli_args import CommandError, check_output_file, check_output_folder, writing
    from cxrscreen.engine.datasets import DataError, from_folders
    from cxrscreen.engine.export import export_run
    from cxrscreen.engine.methods.ddad import Config
    from cxrscreen.engine.preprocess import PreprocessSpec
    from cxrscreen.engine.progress import Progress
    from cxrscreen.engine.stop import StopRequest
    from cxrscreen.engine.synth import write_study
    from cxrscreen.engine.train import run_training

    check_output_file(args.out, args.overwrite)
    if args.work is not None:
        check_output_folder(args.work, "--work")
    with writing(args.out), tempfile.TemporaryDirectory(prefix="cxrscreen-demo-") as tmp:
        work = args.work or Path(tmp)
        progress = Progress(args.progress)
        progress.message("writing synthetic training images")
        # the demo study's chests carry a side marker: the detector must have seen markers on normals,
        # or every marker is an anomaly (and the out-of-scope gate's model would not know them)
        style = dict(size=128, formats=("png",), variation=args.variation, marker=True)
        write_study(work / "normal", args.normals, 0, seed=args.seed * 10 + 1, **style)
        write_study(work / "unlabeled", args.normals // 2, args.normals // 3, seed=args.seed * 10 + 2,
                    lesion_strength=1.5, **style)
        for folder in ("normal", "unlabeled"):
            (work / folder / "labels.csv").unlink()
        data = from_folders(work / "normal", work / "unlabeled", calibration_fraction=args.calibration_fraction)
        config = Config(backbone="ae-u", members=args.members, epochs=args.epochs, seed=args.seed,
                        preprocess=PreprocessSpec(size=64), score_type="rec", score_top_fraction=SCORE_TOP_FRACTION)
        with StopRequest() as stop:
            try:
                outcome = run_training("ddad", config, data, work / "run", progress, stop)
            except DataError as exc:
                raise CommandError(f"the synthetic training set cannot train the demo detector: {exc}") from None
        if outcome.status != "done":
            return 3
        _without_acquisition_reference(work / "run")
        report = export_run(work / "run", args.out, name=DEMO_NAME, overwrite=args.overwrite)
    progress.message(f"demo detector {report.metadata.model_id} -> {args.out}")
    return 0


def _without_acquisition_reference(run_dir: Path) -> None:
    """Drop the acquisition check's reference (:mod:`engine.acquisition`) from the run's scope file.

    Deviation for the demo only: the check's tolerance is what real pneumonia does to the detail
    bands (at most AUC 0.67 on one band); the synthetic lesions do far more (the demo study's
    lesion images lie above at least 99 % of the training normals in the finest band), and its
    512-px PNG and DICOM files differ from the 128-px PNG training images (its normals above a
    median 88 %), so every demo study would be called "acquired unlike the training normals"
    (``bench/acquisition.py --demo``). The demo detector therefore has no reference and no check.
    """
    import json

    from cxrscreen.engine.atomic import atomic_write_text
    from cxrscreen.engine.train import SCOPE_FILE

    path = run_dir / SCOPE_FILE
    if path.is_file():
        scope = json.loads(path.read_text())
        scope.pop("acquisition", None)
        atomic_write_text(path, json.dumps(scope))

