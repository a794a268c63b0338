"""Help ▸ About: the program, its version and what it is not."""
from __future__ import annotations

import platform

from PySide6.QtWidgets import QMessageBox, QWidget


def about_text() -> str:
    """The About box's text (HTML): version, libraries and the intended use in one paragraph."""
    from importlib import metadata

    import onnxruntime
    import PySide6

    try:
        version = metadata.version("cxrscreen")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        version = "(source tree, not installed)"

    return (f"<h3>cxrscreen {version}</h3>"
            "<p>Screens chest X-rays for anomalies with detectors trained on a site's own normal and "
            "unlabeled radiographs (DDAD, AMAE).</p>"
            "<p><b>Not a medical device.</b> Scores are evidence for a reader, calibrated on normal images "
            "the detector never trained on; they are not diagnoses. Images that are not frontal chest "
            "radiographs like the detector's are marked out of scope and not scored.</p>"
            f"<p>Python {platform.python_version()} · PySide6 {PySide6.__version__} · "
            f"onnxruntime {onnxruntime.__version__}</p>")


def show_about(parent: QWidget | None) -> None:
    """Show the About box (modal)."""
    QMessageBox.about(parent, "About cxrscreen", about_text())
