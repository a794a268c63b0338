"""The New-detector panel built from the real engine: `python -m cxrscreen.engine methods --json` and
`python -m cxrscreen.engine train ... --check`, as the app runs them (its default engine command).

This pins the contract between the engine and the app (issue 19): the JSON the engine prints
is one the app reads, every method's panel can be built, and the engine's check answers in the
lines the app reads (one ``problem`` event per problem, naming the option or data role).
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLineEdit, QSpinBox

from cxrscreen.app.engine_process import default_engine_command
from cxrscreen.app.library import ModelLibrary
from cxrscreen.app.settings import AppSettings
from cxrscreen.app.training import options
from cxrscreen.app.training.options import CheckProblem, parse_methods_json, read_catalog
from cxrscreen.app.training.options_form import PathField
from cxrscreen.app.training.panel import NewDetectorPanel
from cxrscreen.app.workers.base import WorkerSet

FIELD_TYPES = {"int": QSpinBox, "float": QDoubleSpinBox, "choice": QComboBox, "bool": QCheckBox, "text": QLineEdit,
               "path": PathField}


def test_the_engines_methods_json_is_one_the_app_reads() -> None:
    out = subprocess.run([*default_engine_command(), "methods", "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    catalog = parse_methods_json(out.stdout, "python -m cxrscreen.engine methods --json")
    assert {"ddad", "amae"} <= set(catalog.names) and catalog.names[0] == "ddad"
    ddad = catalog.method("ddad")
    assert [(r.role, r.requirement) for r in ddad.roles] == [("normal", "required"), ("unlabeled", "required"),
                                                             ("abnormal", "unused")]
    assert {"loss_a", "loss_b"} <= {s.key for s in ddad.loss_series} and "train" in [p.name for p in ddad.phases]
    assert {"device", "threads"} <= {o.name for o in ddad.options if o.runtime}
    for method in catalog.methods:
        assert method.presets and method.phases and method.role("normal").min_count >= 1
        for preset in method.presets:  # every preset says how it differs from the paper
            assert preset.deviations, (method.name, preset.name)
    # DDAD's paper preset trains the paper's settings; AMAE's cannot (no chest X-ray MAE offline)
    assert not any(p.as_published for m in catalog.methods for p in m.presets if p.name != "paper")
    assert ddad.preset("paper").as_published and not catalog.method("amae").preset("paper").as_published
    # every path option says what its Browse button opens: run folders are folders, weights are files
    kinds = {(m.name, o.name): o.path_kind for m in catalog.methods for o in m.options if o.type == "path"}
    assert kinds[("wscxr", "encoder")] == kinds[("msacl_igd", "encoder")] == kinds[("ddad", "reuse_normal_module")] \
        == "folder"
    assert kinds[("wscxr", "backbone_checkpoint")] == kinds[("amae", "mae_checkpoint")] == "file"
    assert set(kinds.values()) == {"file", "folder"}


def test_the_panel_is_built_from_the_real_engine_and_its_check_enables_train(
        qtbot, settings_path: Path, tmp_path: Path, training_folders: dict[str, Path]) -> None:
    options.clear_cache()
    settings = AppSettings(settings_path)
    assert settings.engine_command == default_engine_command()
    workers = WorkerSet()
    panel = NewDetectorPanel(ModelLibrary(tmp_path / "models"), settings, workers, runs_root=tmp_path / "runs")
    qtbot.addWidget(panel)
    try:
        qtbot.waitUntil(lambda: panel.catalog is not None or panel.catalog_error is not None, timeout=120_000)
        assert panel.catalog_error is None
        catalog = panel.catalog
        assert catalog == read_catalog(default_engine_command())
        for info in catalog.methods:
            panel.method_combo.setCurrentIndex(panel.method_combo.findData(info.name))
            for role in info.roles:
                assert panel.zones[role.role].isVisibleTo(panel) == role.used, (info.name, role)
            for option in info.options:
                assert isinstance(panel.options_form.fields[option.name], FIELD_TYPES[option.type]), option
            for preset in info.presets:
                panel.set_preset(preset.name)
                assert ("✓ As published" in panel.preset_label.text()) == preset.as_published
        # DDAD with 16 normals and 12 unlabeled: the paper's batch of 64 cannot work, and the
        # engine's check says which option to change; with the tiny preset it passes and Train is enabled
        panel.method_combo.setCurrentIndex(panel.method_combo.findData("ddad"))
        panel.set_preset("paper")
        panel.set_folder("normal", training_folders["normal"])
        panel.set_folder("unlabeled", training_folders["unlabeled"])
        qtbot.waitUntil(lambda: panel.check_result is not None, timeout=120_000)
        assert not panel.can_train() and not panel.check_result.ok
        assert "batch_size" in {p.option for p in panel.check_result.problems if p.severity == "error"}
        panel.set_preset("tiny")  # its batch of 16 still exceeds the 14 normals module B trains on
        panel.set_option("batch_size", 8)
        qtbot.waitUntil(panel.can_train, timeout=120_000)
        assert panel.check_result is not None and panel.check_result.ok
        assert panel.check_result.args[:3] == ("train", "--method", "ddad")
    finally:
        panel.check.cancel()
        workers.stop_all()
        assert workers.wait_all(30_000)


def _check(*args: str) -> tuple[int, list[CheckProblem], str]:
    out = subprocess.run([*default_engine_command(), "train", *args, "--progress", "json", "--check"],
                         capture_output=True, text=True, timeout=120)
    events = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    return (out.returncode, [CheckProblem.from_event(e) for e in events if e.get("event") == "problem"],
            out.stdout + out.stderr[-2000:])


def test_the_engines_check_names_what_to_change(tmp_path: Path, study: Path,
                                                training_folders: dict[str, Path]) -> None:
    few = tmp_path / "few"
    few.mkdir()
    for p in sorted(study.glob("*.png"))[:2]:  # 2 known normals: below every method's minimum
        (few / p.name).write_bytes(p.read_bytes())
    code, problems, text = _check("--method", "ddad", "--normal", str(few), "--unlabeled", str(study),
                                  "--out", str(tmp_path / "run"))
    assert code != 0 and any(p.severity == "error" and p.option == "normal" for p in problems), text
    assert not (tmp_path / "run").exists()  # a check trains nothing and writes nothing
    # enough images, but the paper's batch of 64 does not fit them: the option is named
    data = ("--method", "ddad", "--normal", str(training_folders["normal"]), "--unlabeled",
            str(training_folders["unlabeled"]), "--out", str(tmp_path / "run"))
    code, problems, text = _check(*data)
    assert code != 0 and {p.option for p in problems if p.severity == "error"} == {"batch_size"}, text
    # a batch that fits: no error, exit 0
    code, problems, text = _check(*data, "--batch-size", "8")
    assert code == 0 and not [p for p in problems if p.severity == "error"], text
    assert not (tmp_path / "run").exists()
