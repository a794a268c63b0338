"""The New-detector panel built from an engine's `methods --json`, driven with a real engine process.

The engine is tests/app/fake_engine.py, configured as the app's engine command: three methods
that mirror the contract — "dual" (normal + unlabeled required, like DDAD), "oneclass" (normals
only) and "weak" (normal + confirmed abnormal required, like WSCXR). Every call it gets is
recorded, so the tests assert the exact command lines the panel runs.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QSpinBox

from cxrscreen.app.library import ModelLibrary
from cxrscreen.app.settings import AppSettings
from cxrscreen.app.training.job import JOB_FILE, JobSpec, find_jobs
from cxrscreen.app.training.panel import CUSTOM, NewDetectorPanel
from cxrscreen.app.workers.base import WorkerSet


@pytest.fixture
def make_panel(qtbot, settings_path: Path, tmp_path: Path):
    made: list[tuple[NewDetectorPanel, WorkerSet]] = []

    def make(command: list[str], wait: bool = True) -> NewDetectorPanel:
        settings = AppSettings(settings_path)
        settings.set_engine_command(command)
        workers = WorkerSet()
        panel = NewDetectorPanel(ModelLibrary(tmp_path / "models"), settings, workers, runs_root=tmp_path / "runs")
        qtbot.addWidget(panel)
        made.append((panel, workers))
        if wait:
            qtbot.waitUntil(lambda: panel.catalog is not None or panel.catalog_error is not None, timeout=30_000)
        return panel

    yield make
    for panel, workers in made:
        panel.check.cancel()
        if panel.job is not None and panel.job.running:
            panel.job.stop_now()
        workers.stop_all()
        assert workers.wait_all(30_000)
        if panel.job is not None:
            assert panel.job.wait(30_000)


def _choose(panel: NewDetectorPanel, method: str) -> None:
    panel.method_combo.setCurrentIndex(panel.method_combo.findData(method))
    assert panel.info is not None and panel.info.name == method


def _ready(qtbot, panel: NewDetectorPanel) -> None:
    qtbot.waitUntil(panel.can_train, timeout=30_000)


def _findings(panel: NewDetectorPanel) -> list[str]:
    return [panel.findings_list.item(i).text() for i in range(panel.findings_list.count())]


def test_methods_presets_and_option_fields_come_from_the_engine(qtbot, make_panel, fake_engine) -> None:
    panel = make_panel(fake_engine.command)
    assert panel.catalog_error is None and not panel.engine_label.isVisibleTo(panel)
    assert [panel.method_combo.itemData(i) for i in range(panel.method_combo.count())] == ["dual", "oneclass", "weak"]
    assert panel.method_combo.currentText() == "Dual (dual-distribution discrepancy, test)"  # the first is the default
    assert "Cai et al." in panel.method_label.text()
    assert [panel.preset_combo.itemData(i) for i in range(panel.preset_combo.count())] == ["paper", "quick", CUSTOM]
    assert panel.preset_combo.currentData() == "paper"
    assert "As published" in panel.preset_label.text()
    panel.set_preset("quick")
    text = panel.preset_label.text()
    assert "Not as published" in text and "50 epochs instead of 250" in text and "✓ As published" not in text
    # fields by type, with the engine's bounds and help
    form = panel.options_form
    assert isinstance(form.fields["backbone"], QComboBox) and form.fields["backbone"].currentText() == "ae-u"
    assert [form.fields["backbone"].itemText(i) for i in range(3)] == ["ae", "ae-u", "memae"]
    members = form.fields["members"]
    assert isinstance(members, QSpinBox) and (members.minimum(), members.maximum()) == (2, 16)
    assert "networks per module (K) (2 to 16)" in members.toolTip() and "--members" in members.toolTip()
    assert isinstance(form.fields["augment"], QCheckBox) and not form.fields["augment"].isChecked()
    lr = form.fields["lr"]
    assert isinstance(lr, QDoubleSpinBox) and lr.text() == "default" and form.values()["lr"] is None
    assert form.values()["epochs"] == 50 and form.values()["seed"] == 0
    # run options sit apart and never change the preset
    assert form.run_form.indexOf(form.fields["threads"]) >= 0 and form.trained_form.indexOf(form.fields["threads"]) < 0
    form.fields["threads"].setValue(1)  # as the user would
    assert panel.preset_combo.currentData() == "quick"
    form.fields["members"].setValue(5)
    assert panel.preset_combo.currentData() == CUSTOM
    assert panel.preset_label.text().startswith("Quick, changed: K (networks per module) 5 (was 3).")
    panel.set_preset("paper")  # the run option stays
    assert form.values()["threads"] == 1 and form.values()["members"] == 3 and form.values()["epochs"] == 250
    assert "✓ As published" in panel.preset_label.text()
    panel.set_option("epochs", 5)  # a changed paper preset is not the paper's
    assert "✓ As published" not in panel.preset_label.text() and "Not as published" in panel.preset_label.text()
    # the one-class method: its own options; its paper preset is not called "as published" (the JSON says so)
    _choose(panel, "oneclass")
    assert "features" in form.fields and "backbone" not in form.fields
    assert "Not as published" in panel.preset_label.text() and "ImageNet weights replaced" in panel.preset_label.text()
    assert panel.settings.training_method == "oneclass"
    # the engine was asked once for its methods
    assert fake_engine.calls()[:2] == [["--version"], ["methods", "--json"]]
    assert sum(c == ["methods", "--json"] for c in fake_engine.calls()) == 1


@pytest.mark.parametrize("method, visible, notes", [
    ("dual", {"normal", "unlabeled"}, {"normal": "required, at least 6 images", "unlabeled": "required, at least 4 images"}),
    ("oneclass", {"normal", "abnormal"}, {"normal": "required, at least 5 images", "abnormal": "optional"}),
    ("weak", {"normal", "abnormal"}, {"normal": "required, at least 5 images", "abnormal": "required, at least 2 images"}),
])
def test_drop_zones_follow_the_methods_roles(qtbot, make_panel, fake_engine, method: str, visible: set[str],
                                             notes: dict[str, str]) -> None:
    panel = make_panel(fake_engine.command)
    _choose(panel, method)
    shown = {r for r in ("normal", "unlabeled", "abnormal") if panel.zones[r].isVisibleTo(panel)}
    assert shown == visible and panel.zones["validation"].isVisibleTo(panel)
    for role, note in notes.items():
        assert note in panel.zones[role].title_label.text()
    hidden = ({"normal", "unlabeled", "abnormal"} - visible).pop()
    with pytest.raises(ValueError, match="does not use"):
        panel.set_folder(hidden, Path("/tmp"))


def test_changing_to_a_method_that_does_not_use_a_folder_drops_it(qtbot, make_panel, fake_engine,
                                                                  role_folders: dict[str, Path]) -> None:
    panel = make_panel(fake_engine.command)
    panel.set_folder("normal", role_folders["normal"])
    panel.set_folder("unlabeled", role_folders["unlabeled"])
    _ready(qtbot, panel)
    _choose(panel, "oneclass")
    assert panel.zones["unlabeled"].path is None and panel.summaries["unlabeled"] is None
    _ready(qtbot, panel)  # normals only
    assert "--unlabeled" not in fake_engine.checks()[-1]


@pytest.mark.parametrize("method, folders, expected", [
    ("dual", ("normal", "unlabeled"), ["--preset", "paper", "--normal", "{normal}", "--unlabeled", "{unlabeled}"]),
    ("oneclass", ("normal",), ["--preset", "paper", "--normal", "{normal}"]),
    ("weak", ("normal", "abnormal"), ["--preset", "paper", "--normal", "{normal}", "--abnormal", "{abnormal}"]),
])
def test_the_engine_checks_exact_command_lines_before_train(qtbot, make_panel, fake_engine, role_folders, method: str,
                                                            folders: tuple[str, ...], expected: list[str]) -> None:
    panel = make_panel(fake_engine.command)
    _choose(panel, method)
    assert not panel.can_train()
    for role in folders:
        panel.set_folder(role, role_folders[role])
    _ready(qtbot, panel)
    check = fake_engine.checks()[-1]
    run_dir = check[check.index("--out") + 1]
    assert check == ["train", "--method", method, *[w.format(**{k: str(v) for k, v in role_folders.items()})
                                                    for w in expected],
                     "--out", run_dir, "--progress", "json", "--check"]
    assert Path(run_dir).parent == panel.runs_root and not Path(run_dir).exists()  # a check writes nothing


def test_check_problems_name_the_option_and_block_train_until_fixed(qtbot, make_panel, fake_engine,
                                                                    role_folders) -> None:
    panel = make_panel(fake_engine.command)
    panel.set_folder("normal", role_folders["normal"])
    panel.set_folder("unlabeled", role_folders["unlabeled"])
    _ready(qtbot, panel)
    n_checks = len(fake_engine.checks())
    # several edits in a row: one check (debounced), with the last values; the panel never waits for it
    t0 = time.monotonic()
    for batch in (3, 4, 5, 6, 50):
        panel.set_option("batch_size", batch)
    assert time.monotonic() - t0 < 0.5
    assert not panel.can_train() and "checking" in panel.train_button.toolTip()
    qtbot.waitUntil(lambda: panel.check_result is not None and not panel.check_result.ok, timeout=30_000)
    assert len(fake_engine.checks()) == n_checks + 1 and "50" in fake_engine.checks()[-1]
    assert not panel.can_train()
    problem = next(t for t in _findings(panel) if t.startswith("✖  Engine check:"))
    assert problem == ("✖  Engine check: batch size 50 is larger than the 7 known normals left for training. "
                       "Change “Batch size” under Advanced settings.")
    assert panel.train_button.toolTip() == problem[3:]
    field = panel.options_form.fields["batch_size"]
    assert panel.options_form.label("batch_size").text() == "⚠ Batch size" and "larger than" in field.toolTip()
    # a warning does not block
    panel.set_option("batch_size", 4)
    panel.set_option("epochs", 2000)
    _ready(qtbot, panel)
    assert any(t.startswith("⚠  Engine check: 2000 epochs will take long. Change “Epochs”") for t in _findings(panel))
    assert panel.options_form.label("batch_size").text() == "Batch size" and field.toolTip().startswith("images per step")
    # the app's own folder checks come first: too few confirmed-abnormal images, no engine check asked
    _choose(panel, "weak")
    panel.set_folder("abnormal", role_folders["one_abnormal"])
    n_checks = len(fake_engine.checks())
    qtbot.waitUntil(lambda: not panel._scans and any("confirmed-abnormal folder has 1" in t for t in _findings(panel)),
                    timeout=30_000)
    assert any(t == "✖  The confirmed-abnormal folder has 1 readable radiographs; this method needs at least 2."
               for t in _findings(panel))
    qtbot.wait(800)
    assert len(fake_engine.checks()) == n_checks and not panel.can_train()


def test_an_engine_that_fails_the_check_without_a_problem_line_is_shown(qtbot, make_panel, tmp_path,
                                                                        fake_engine, role_folders) -> None:
    # today's engine, say: it knows `methods --json` but not `train --check`
    engine = tmp_path / "no_check_engine.py"
    engine.write_text("import sys, runpy\n"
                      "if sys.argv[-1] == '--check':\n"
                      "    sys.exit('cxrscreen train: error: unrecognized arguments: --check')\n"
                      f"sys.argv[1:1] = ['--record', {str(fake_engine.record)!r}]\n"
                      f"runpy.run_path({str(Path(__file__).with_name('fake_engine.py'))!r}, run_name='__main__')\n")
    panel = make_panel([sys.executable, str(engine)])
    panel.set_folder("normal", role_folders["normal"])
    panel.set_folder("unlabeled", role_folders["unlabeled"])
    qtbot.waitUntil(lambda: panel.check_result is not None, timeout=30_000)
    assert not panel.can_train()
    assert ("✖  Engine check: The engine's check failed: cxrscreen train: error: unrecognized arguments: --check."
            in _findings(panel))


def test_weakly_supervised_training_passes_the_abnormal_folder_and_shows_the_methods_phases(
        qtbot, make_panel, fake_engine, role_folders, tmp_path: Path) -> None:
    panel = make_panel(fake_engine.command)
    _choose(panel, "weak")
    panel.set_folder("normal", role_folders["normal"])
    panel.set_folder("abnormal", role_folders["abnormal"])
    panel.set_option("threads", 1)
    _ready(qtbot, panel)
    assert panel.preset_combo.currentData() == "paper"
    assert panel.options_form.values()["lr"] == 3.75e-05  # the preset's value exactly: not passed as a change
    job = panel.start_training()
    assert job is not None
    titles: list[str] = []
    job.phase_changed.connect(lambda *_: titles.append(panel.progress_view.stage_label.text()))
    qtbot.waitUntil(lambda: panel.last_failure is not None, timeout=60_000)
    # the command trained is the command checked, without --check
    train = [c for c in fake_engine.calls() if c[:1] == ["train"] and "--check" not in c]
    assert train == [fake_engine.checks()[-1][:-1]]
    assert train[0][3:9] == ["--preset", "paper", "--normal", str(role_folders["normal"]), "--abnormal",
                             str(role_folders["abnormal"])]
    assert train[0][-4:] == ["--threads", "1", "--progress", "json"]
    # phases and loss series as the JSON names them
    pv = panel.progress_view
    assert titles == ["Training — phase 1 of 4: Reading images", "Training — phase 2 of 4: Pre-training on the normals",
                      "Training — phase 3 of 4: Learning from the abnormal images",
                      "Training — phase 4 of 4: Calibrating on held-out normals"]
    assert set(pv.points) == {"pretrain: loss", "stage2: loss"} and pv.points["stage2: loss"] == ([1.0, 2.0], [2.0, 1.0])
    legend = [label.text for _, label in pv.plot.getPlotItem().legend.items]
    assert legend == ["pre-training", "contrastive"]
    # this engine cannot export: the job stops there and nothing reaches the library
    assert panel.last_failure.title == "Export failed" and panel.library.entries() == []
    record = json.loads((job.spec.run_dir / JOB_FILE).read_text())
    assert record["spec"]["abnormal"] == str(role_folders["abnormal"]) and record["spec"]["unlabeled"] is None
    assert record["spec"]["base_preset"] == "paper"
    # the record loads again and resumes with the same command line
    (spec,) = [r.spec for r in find_jobs(panel.runs_root)]
    assert spec.train_args(panel.catalog.method("weak")) == train[0]


def test_phase_titles_come_from_the_json(qtbot, make_panel, fake_engine) -> None:
    panel = make_panel(fake_engine.command)
    pv = panel.progress_view
    pv.set_method(panel.catalog.method("dual"))
    pv.on_phase("train", 2, 3, {"total": 10})
    assert pv.stage_label.text() == "Training — phase 2 of 3: Training modules A and B"
    pv.on_epoch({"phase": "train", "epoch": 1, "epochs": 2, "loss_a": 0.5, "loss_b": 0.25, "loss": 0.375})
    assert set(pv.points) == {"loss_a", "loss_b"}  # "loss" is not a series of this method


def test_job_records_of_the_previous_version_still_load(qtbot, make_panel, fake_engine, tmp_path: Path) -> None:
    panel = make_panel(fake_engine.command)
    run = panel.runs_root / "20260101-000000-dual-old"
    run.mkdir(parents=True)
    # as the previous version wrote it: unlabeled always set, no base_preset
    old = {"name": "old", "method": "dual", "preset": "quick", "values": {"epochs": 2, "members": 2, "threads": 1},
           "normal": "/data/n", "unlabeled": "/data/u", "run_dir": str(run), "abnormal": None, "validation": None,
           "counts": {}}
    (run / JOB_FILE).write_text(json.dumps({"spec": old, "status": "stopped", "updated": "2026-01-01T00:00:00+00:00"}))
    (record,) = find_jobs(panel.runs_root)
    assert record.resumable and record.spec.unlabeled == Path("/data/u") and record.spec.base_preset is None
    args = record.spec.train_args(panel.catalog.method("dual"))
    assert args == ["train", "--method", "dual", "--preset", "quick", "--normal", "/data/n", "--unlabeled", "/data/u",
                    "--out", str(run), "--epochs", "2", "--threads", "1", "--members", "2", "--progress", "json"]
    # a "custom" record of the previous version: no preset passed, every value is
    custom = JobSpec.from_json({**old, "preset": "custom"})
    assert "--preset" not in custom.train_args(panel.catalog.method("dual"))
    # a one-class record has no unlabeled folder
    spec = JobSpec.from_json({**old, "method": "oneclass", "preset": "small", "values": {}, "unlabeled": None})
    assert spec.unlabeled is None and "--unlabeled" not in spec.train_args(panel.catalog.method("oneclass"))
    panel.refresh_unfinished()
    assert panel.unfinished_list.count() == 1


@pytest.mark.parametrize("script, message", [
    ("print('cxrscreen 3.0') if sys.argv[1:] == ['--version'] else print(json.dumps({'schema': 2}))",
     "schema 2; this app reads schema 1: update the app"),
    ("print('cxrscreen 3.0') if sys.argv[1:] == ['--version'] else print('{\"schema\": 1, \"methods\": [')",
     "the engine did not print JSON"),
    ("print('cxrscreen 3.0') if sys.argv[1:] == ['--version'] else sys.exit('Traceback: ImportError: no torch')",
     "the engine failed (exit code 1: Traceback: ImportError: no torch)"),
])
def test_an_engine_whose_methods_cannot_be_read_is_explained_in_the_panel(qtbot, make_panel, fake_engine, tmp_path,
                                                                          script: str, message: str) -> None:
    engine = tmp_path / "engine.py"
    engine.write_text(f"import json, sys\n{script}\n")
    panel = make_panel([sys.executable, str(engine)])
    assert panel.catalog is None and message in panel.catalog_error
    assert panel.engine_label.isVisibleTo(panel) and message in panel.engine_label.text()
    assert "Traceback (most recent call last)" not in panel.engine_label.text()
    assert panel.retry_button.isVisibleTo(panel) and not panel.method_combo.isEnabled() and not panel.can_train()
    # the user points the app at a working engine and asks again
    panel.settings.set_engine_command(fake_engine.command)
    panel.retry_button.click()
    qtbot.waitUntil(lambda: panel.catalog is not None, timeout=30_000)
    assert not panel.engine_label.isVisibleTo(panel) and panel.method_combo.count() == 3


def test_the_card_says_whether_the_preset_was_the_papers(qtbot, make_panel, fake_engine, tmp_path: Path) -> None:
    from cxrscreen.app.training.job import TrainingJob

    panel = make_panel(fake_engine.command)
    dual = panel.catalog.method("dual")

    def card(preset: str, base: str | None) -> dict:
        spec = JobSpec("x", "dual", preset, {}, Path("/n"), Path("/u"), tmp_path / preset, base_preset=base)
        return TrainingJob(spec, panel.library, dual, fake_engine.command)._card_extra()["training_job"]

    paper = card("paper", "paper")
    assert (paper["preset_title"], paper["as_published"], paper["deviations"]) == ("Paper protocol", True, [])
    quick = card("quick", "quick")
    assert not quick["as_published"] and quick["deviations"] == ["50 epochs instead of 250"]
    changed = card(CUSTOM, "paper")  # the paper preset with a trained setting changed is not the paper's
    assert not changed["as_published"] and changed["deviations"] == ["settings changed from the preset"]
    assert changed["command"].endswith("--preset paper --normal /n --unlabeled /u --out "
                                       f"{tmp_path / CUSTOM} --progress json")


def test_new_fields_start_at_the_engines_defaults_so_a_preset_change_keeps_them(qtbot, fake_engine) -> None:
    import subprocess

    from cxrscreen.app.training.options import parse_methods_json
    from cxrscreen.app.training.options_form import OptionsForm

    out = subprocess.run([*fake_engine.command, "methods", "--json"], capture_output=True, text=True, timeout=60,
                         check=True)
    data = json.loads(out.stdout)
    for o in data["common_options"]:  # the real engine's: a default above the minimum
        if o["name"] == "checkpoint_every":
            o.update(default=60.0, minimum=0.0)
    info = parse_methods_json(json.dumps(data)).method("dual")
    form = OptionsForm()
    qtbot.addWidget(form)
    form.set_method(info)
    # a fresh spin box holds its minimum: the panel kept it as the user's run option (--checkpoint-every 0)
    assert form.values()["checkpoint_every"] == 60.0
    assert form.values()["members"] == info.option("members").default


def test_a_drop_zone_note_counts_in_words() -> None:
    from cxrscreen.app.training.panel import role_note

    assert role_note("required", 1) == "required, at least 1 image"  # WSCXR's abnormal folder read "1 images"
    assert role_note("required", 1200) == "required, at least 1,200 images"
    assert role_note("required", 0) == "required" and role_note("optional", 1) == "optional"
    assert role_note("unused", 0) == ""


def test_a_path_option_has_a_browse_button_for_a_folder_or_a_file(qtbot, fake_engine, tmp_path, monkeypatch) -> None:
    import subprocess

    from PySide6.QtWidgets import QFileDialog

    from cxrscreen.app.training.options import parse_methods_json
    from cxrscreen.app.training.options_form import OptionsForm, PathField

    out = subprocess.run([*fake_engine.command, "methods", "--json"], capture_output=True, text=True, timeout=60,
                         check=True)
    data = json.loads(out.stdout)
    dual = next(m for m in data["methods"] if m["name"] == "dual")
    dual["options"] += [
        {"name": "encoder", "flag": "--encoder", "type": "path", "path_kind": "folder", "default": None,
         "help": "a finished run folder", "kind": "trained"},
        {"name": "weights", "flag": "--weights", "type": "path", "default": None, "help": "a state dict",
         "kind": "trained"},  # an engine that does not say: a file
    ]
    info = parse_methods_json(json.dumps(data)).method("dual")
    assert info.option("encoder").path_kind == "folder" and info.option("weights").path_kind == "file"
    form = OptionsForm()
    qtbot.addWidget(form)
    form.set_method(info)
    encoder, weights = form.fields["encoder"], form.fields["weights"]
    assert isinstance(encoder, PathField) and encoder.browse.text() == "Folder…" and weights.browse.text() == "File…"
    asked: list[str] = []
    folder, file = tmp_path / "run dir", tmp_path / "w.pt"
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a: asked.append("folder") or str(folder))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a: (asked.append("file") or str(file), ""))
    with qtbot.waitSignal(form.edited, timeout=1000):
        encoder.browse.click()
    weights.browse.click()
    assert asked == ["folder", "file"]
    values = form.values()
    assert values["encoder"] == str(folder) and values["weights"] == str(file)
    assert info.option("encoder").arguments(values["encoder"]) == ["--encoder", str(folder)]
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a: "")  # cancelled: the path stays
    encoder.browse.click()
    assert form.values()["encoder"] == str(folder)
    form.set_values({"encoder": None})
    assert form.values()["encoder"] is None and encoder.line.placeholderText() == "(none)"
