"""`cxrscreen demo`: generate a synthetic study folder, then scan and read it back.

A headless check that the reading pipeline works on this machine, without any real data:
writes synthetic chest radiographs (PNG 8/16-bit, DICOM MONOCHROME1/2, 8-16 bits) with
:func:`engine.synth.write_study`, finds them with :func:`engine.io.scan_folder`, reads each
with :func:`engine.io.read_radiograph` and prints what it read, one line per file, then a
summary. Exit status 0 when every file was read, 1 otherwise.

Torch-free and Qt-free. The reader and the generator are imported when the demo runs, not
with its parser (``cxrscreen --help`` builds every command's parser).
"""
from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

from cxrscreen.engine.cli_args import non_negative_int

_COLUMNS = ("name", "format", "size", "photometric", "bits", "modality/view", "min", "mean", "max", "truth")
_WIDTHS = (14, 6, 9, 11, 4, 13, 5, 5, 5, 13)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the demo's options to its subcommand parser."""
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="write the study into DIR/study (kept); default: a temporary folder, removed afterwards")
    parser.add_argument("--n-normal", type=non_negative_int, default=4, metavar="N", help="normal chests (default 4)")
    parser.add_argument("--n-abnormal", type=non_negative_int, default=4, metavar="N",
                        help="chests with a nodule, consolidation or effusion (default 4)")
    parser.add_argument("--size", type=_size, default=256, metavar="PX", help="image side in pixels, 16-4096 (default 256)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="random seed; the same seed writes the same study (default 0)")
    parser.add_argument("--formats", nargs="+", choices=("png", "dicom"), default=["png", "dicom"],
                        help="file formats to write (default: png dicom)")


def _size(text: str) -> int:
    value = non_negative_int(text)
    if not 16 <= value <= 4096:
        raise argparse.ArgumentTypeError(f"size must be 16 to 4096 pixels, got {text!r}")
    return value


def _row(values: tuple[str, ...]) -> str:
    return "  ".join(v.ljust(w) for v, w in zip(values, _WIDTHS)).rstrip()


def _truth(folder: Path) -> dict[str, str]:
    """finding per file name, from the study's labels.csv."""
    with open(folder / "labels.csv", newline="", encoding="utf-8") as f:
        return {row["path"]: row["finding"] for row in csv.DictReader(f)}


def read_and_print(folder: Path) -> tuple[int, int]:
    """Scan ``folder``, read every radiograph and print one line per file.

    Returns:
        (files read, errors).
    """
    from cxrscreen.engine.io import RadiographReadError, read_radiograph, scan_folder

    truth = _truth(folder) if (folder / "labels.csv").is_file() else {}
    print(_row(_COLUMNS))
    n_read = n_errors = 0
    for item in scan_folder(folder):
        name = item.path.name
        try:
            if item.error is not None:
                raise item.error
            image = read_radiograph(item.path)
        except RadiographReadError as exc:
            n_errors += 1
            print(f"{name.ljust(_WIDTHS[0])}  ERROR: {exc.reason}")
            continue
        n_read += 1
        meta, px = image.meta, image.pixels
        modality_view = f"{meta.modality or '-'}/{meta.view_position or '-'}"
        print(_row((
            name, meta.format, f"{meta.columns}x{meta.rows}", meta.photometric or "-",
            str(meta.bits_stored or "-"), modality_view,
            f"{px.min():.3f}", f"{px.mean():.3f}", f"{px.max():.3f}", truth.get(name, "?"),
        )))
    return n_read, n_errors


def run(args: argparse.Namespace) -> int:
    """Write the study, read it back, print; 0 when every file was read."""
    from cxrscreen.engine.cli_args import check_output_folder, writing

    if args.out is None:
        with tempfile.TemporaryDirectory(prefix="cxrscreen-demo-") as tmp:
            return _demo(Path(tmp), args, kept=False)
    check_output_folder(Path(args.out))
    with writing(Path(args.out)):
        return _demo(Path(args.out), args, kept=True)


def _demo(out: Path, args: argparse.Namespace, kept: bool) -> int:
    from cxrscreen.engine.synth import write_study

    study = out / "study"
    written = write_study(study, args.n_normal, args.n_abnormal, size=args.size,
                          formats=tuple(args.formats), seed=args.seed)
    where = str(study) if kept else f"{study} (temporary; pass --out DIR to keep it)"
    print(f"wrote {len(written)} synthetic chest radiographs ({args.n_normal} normal, "
          f"{args.n_abnormal} with a lesion) to {where}")
    if args.n_abnormal:
        print(f"lesion masks: {study.with_name(study.name + '_masks')}")
    n_read, n_errors = read_and_print(study)
    print(f"summary: {n_read} files read, {n_errors} errors")
    return 0 if n_errors == 0 else 1
