"""Synthetic frontal chest radiographs with optional lesions, for tests and the demo.

Not training data for real use: the images are plausible to the eye and have the structures an
anomaly detector must model (lungs, mediastinum, heart, diaphragm, ribs, clavicles, spine,
vessels, noise, exposure and positioning variation), nothing more.

Public API:
    generate_chest(seed, size=256, *, lesion=None, lesion_strength=1.0, variation=1.0,
                   pose=True, marker=True) -> SyntheticChest
    write_study(folder, n_normal, n_abnormal, *, size=256, formats=("png", "dicom"), seed=0,
                lesions=LESION_KINDS, lesion_strength=1.0, variation=1.0,
                mask_folder=None) -> list[StudyImage]
        radiographs + labels.csv in ``folder``, masks in ``<folder>_masks``
"""
from engine.synth.chest import Finding, SyntheticChest, generate_chest
from engine.synth.lesions import LESION_KINDS, LesionKind
from engine.synth.study import ENCODINGS, Encoding, StudyImage, quantise, write_study

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
