"""Synthetic frontal chest radiographs with optional lesions, for tests and the demo.

Not training data for real use: the images are plausible to the eye and have the structures an
anomaly detector must model (lungs, mediastinum, heart, diaphragm, ribs, clavicles, spine,
vessels, noise, exposure and positioning variation), nothing more.

Public API:
    generate_chest(seed, size=256, *, lesion=None, lesion_strength=1.0, variation=1.0,
                   pose=True, marker=True) -> SyntheticChest
    write_study(folder, n_normal, n_abnormal, *, size=256, formats=("png", "dicom"), seed=0,
                lesions=LESION_KINDS, lesion_strength=1.0, variation=1.0, pose=True,
                marker=True, mask_folder=None) -> list[StudyImage]
        radiographs + labels.csv in ``folder``, masks in ``<folder>_masks``

Detectability: a lesion at strength 1 raises its region's brightness by ~0.15-0.3, but with
``variation=1`` normal chests differ from each other far more than that, so a detector fitted
on ~100 normals scores lesions only a little higher (a 20-component PCA reconstruction error
at 64 px: AUROC 0.57-0.67 at strength 1, 0.74-0.91 at strength 2). For tests that need a clear
separation use ``variation=0.5, marker=False, lesion_strength=2`` (PCA AUROC 0.96-1.00) or
``variation=0.3, pose=False, marker=False`` (0.96-1.00 at strength 1).

Modules: ``anatomy`` (patient parameters, soft tissue, lungs, heart, mediastinum), ``bones``,
``vessels``, ``lesions``, ``imaging`` (exposure, tone curve, blur, noise, markers), ``grid``
(anatomical coordinates), ``chest`` (:func:`generate_chest`), ``study`` (:func:`write_study`).
"""
from cxrscreen.engine.synth.chest import Finding, SyntheticChest, generate_chest
from cxrscreen.engine.synth.lesions import LESION_KINDS, LesionKind
from cxrscreen.engine.synth.study import ENCODINGS, Encoding, StudyImage, quantise, write_study

__all__ = [
    "ENCODINGS",
    "Encoding",
    "Finding",
    "LESION_KINDS",
    "LesionKind",
    "StudyImage",
    "SyntheticChest",
    "generate_chest",
    "quantise",
    "write_study",
]
