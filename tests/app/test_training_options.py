"""Methods as an engine describes them (`methods --json`): parsing, refusals, the cache, command lines.

The engine is tests/app/fake_engine.py run as a real process (the app's engine command), whose
three methods mirror the contract: "dual" (normal + unlabeled), "oneclass" (normals only) and
"weak" (normal + confirmed abnormal).
"""
from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cxrscreen.app.training import options
from cxrscreen.app.training.options import CheckProblem, MethodsJsonError, parse_methods_json, read_catalog, train_arguments

FAKE = Path(__file__).with_name("fake_engine.py")


def _methods(record: Path) -> dict:
    out = subprocess.run([sys.executable, str(FAKE), "--record", str(record), "methods", "--json"],
                         capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


@pytest.fixture
def methods_json(tmp_path: Path) -> dict:
    return _methods(tmp_path / "record.jsonl")


def _calls(record: Path) -> list[list[str]]:
    return [json.loads(line) for line in record.read_text().splitlines()]


def test_the_engines_json_becomes_methods_roles_options_and_presets(methods_json: dict) -> None:
    catalog = parse_methods_json(json.dumps(methods_json))
    assert catalog.engine_version == "9.9.9-test" and catalog.names == ["dual", "oneclass", "weak"]
    dual = catalog.method("dual")
    assert [(r.role, r.requirement, r.min_count) for r in dual.roles] == [
        ("normal", "required", 6), ("unlabeled", "required", 4), ("abnormal", "unused", 0)]
    # common options first, then the method's own; the panel's own flags (--out, --progress) are not fields
    names = [o.name for o in dual.options]
    assert names[:3] == ["epochs", "batch_size", "lr"] and names[-3:] == ["backbone", "members", "augment"]
    assert "out" not in names and "progress" not in names
    members = dual.option("members")
    assert (members.type, members.default, members.minimum, members.maximum, members.common) == ("int", 3, 2, 16, False)
    assert dual.option("threads").runtime and not dual.option("epochs").runtime
    assert dual.option("backbone").choices == ("ae", "ae-u", "memae") and dual.option("epochs").label == "Epochs"
    assert [p.name for p in dual.presets] == ["paper", "quick"] and dual.presets[0].as_published
    assert dual.preset("quick").deviations == ("50 epochs instead of 250",)
    assert dual.values_for("quick")["epochs"] == 50 and dual.values_for("quick")["seed"] == 0
    assert [p.title for p in dual.phases][1] == "Training modules A and B"
    assert [(s.key, s.title, s.phase) for s in dual.loss_series] == [("loss_a", "module A", None),
                                                                    ("loss_b", "module B", None)]
    weak = catalog.method("weak")
    assert weak.role("abnormal").requirement == "required" and not weak.role("unlabeled").used
    assert [s.phase for s in weak.loss_series] == ["pretrain", "stage2"]
    assert not catalog.method("oneclass").presets[0].as_published  # the JSON decides, never the app


@pytest.mark.parametrize("change, message", [
    # each edge case: what the user is told, in one sentence
    (lambda d: d.update(schema=2), "schema 2; this app reads schema 1: update the app"),
    (lambda d: d.pop("methods"), "the methods JSON.methods: missing"),
    (lambda d: d["methods"][0]["options"][0].pop("flag"), "methods['dual'].options[0].flag: missing"),
    (lambda d: d["methods"][0]["options"][1].update(type="integer"),
     "methods['dual'].options[1].type: 'integer' is not one of"),
    (lambda d: d["methods"][1]["roles"].reverse(), "must list the roles ['normal', 'unlabeled', 'abnormal']"),
    (lambda d: d["methods"][0]["presets"][0]["values"].update(colour=1), "'colour' is not an option of dual"),
    (lambda d: d["methods"][0]["presets"][1]["values"].update(members=1),
     "methods['dual'].presets[1].values: K (networks per module) must be at least 2, got 1"),
    (lambda d: d["methods"][2]["roles"][2].update(min_count="two"), "min_count: expected a whole number, got 'two'"),
    (lambda d: d["methods"][0]["options"].append(dict(d["common_options"][0])), "option names used twice"),
    (lambda d: d["methods"].clear(), "the engine lists no training method"),
])
def test_a_malformed_or_newer_json_is_refused_with_what_is_wrong(methods_json: dict, change, message: str) -> None:
    data = copy.deepcopy(methods_json)
    change(data)
    with pytest.raises(MethodsJsonError) as err:
        parse_methods_json(json.dumps(data), "engine methods --json")
    assert message in str(err.value) and err.value.source == "engine methods --json"


def test_output_that_is_not_json_is_quoted() -> None:
    with pytest.raises(MethodsJsonError, match=r"did not print JSON .*it printed 'usage: cxrscreen \[-h\]'"):
        parse_methods_json("usage: cxrscreen [-h]\n")


def test_read_from_the_engine_process_and_cached_per_command_and_version(tmp_path: Path) -> None:
    options.clear_cache()
    record = tmp_path / "record.jsonl"
    command = [sys.executable, str(FAKE), "--record", str(record)]
    first = read_catalog(command)
    assert read_catalog(command) is first and first.command == tuple(command)
    assert _calls(record) == [["--version"], ["methods", "--json"], ["--version"]]  # the version is asked each time
    # an engine updated under the same command is read again
    version = tmp_path / "version.txt"
    version.write_text("1.0")
    engine = tmp_path / "engine.py"
    engine.write_text(textwrap.dedent(f"""
        import json, pathlib, sys
        sys.argv[1:1] = ["--record", {str(tmp_path / 'inner.jsonl')!r}]
        v = pathlib.Path({str(version)!r}).read_text()
        if sys.argv[3:] == ["--version"]:
            print("cxrscreen " + v)
        else:
            sys.path.insert(0, {str(FAKE.parent)!r})
            import fake_engine
            data = fake_engine.methods_json()
            data["engine_version"] = v
            print(json.dumps(data))
    """))
    command = [sys.executable, str(engine)]
    assert read_catalog(command).engine_version == "1.0"
    assert read_catalog(command).engine_version == "1.0"
    version.write_text("1.1")
    assert read_catalog(command).engine_version == "1.1"


def test_an_engine_that_cannot_run_or_fails_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(MethodsJsonError, match="'/no/such/engine' is not a program"):
        read_catalog(["/no/such/engine"])
    failing = tmp_path / "old_engine.py"  # an engine without the methods command
    failing.write_text("import sys\nif sys.argv[1:] == ['--version']: print('cxrscreen 0.1')\n"
                       "else: sys.exit(\"cxrscreen: error: argument COMMAND: invalid choice: 'methods'\")\n")
    with pytest.raises(MethodsJsonError, match="this engine \\(cxrscreen 0.1\\) has no `methods` command: it is older"):
        read_catalog([sys.executable, str(failing)])
    crashing = tmp_path / "broken_engine.py"
    crashing.write_text("import sys\nif sys.argv[1:] == ['--version']: print('cxrscreen 0.3')\n"
                        "else: sys.exit('ImportError: no module named pydicom')\n")
    with pytest.raises(MethodsJsonError, match="exit code 1: ImportError: no module named pydicom"):
        read_catalog([sys.executable, str(crashing)])


def test_presets_and_roles_become_exact_command_lines(methods_json: dict) -> None:
    catalog = parse_methods_json(json.dumps(methods_json))
    dual, oneclass, weak = (catalog.method(n) for n in ("dual", "oneclass", "weak"))
    folders = {"normal": Path("N"), "unlabeled": Path("U"), "abnormal": None}
    # the preset's values are not repeated; what differs from it is passed
    assert train_arguments(dual, dual.values_for("paper"), folders, Path("R"), "paper") == [
        "train", "--method", "dual", "--preset", "paper", "--normal", "N", "--unlabeled", "U", "--out", "R",
        "--progress", "json"]
    args = train_arguments(dual, dual.values_for("quick", {"epochs": 2, "threads": 1, "augment": True, "lr": 0.0005}),
                           folders, Path("R"), "quick", check=True)
    assert args[11:] == ["--epochs", "2", "--lr", "0.0005", "--threads", "1", "--augment", "--progress", "json",
                         "--check"]
    # a bool that differs from the preset by being false is passed as --no-flag
    assert "--no-hard-negatives" in train_arguments(weak, weak.values_for("paper", {"hard_negatives": False}),
                                                    {"normal": Path("N"), "abnormal": Path("A")}, Path("R"), "paper")
    # one-class: normals only; weakly supervised: the confirmed-abnormal folder as --abnormal
    assert train_arguments(oneclass, oneclass.values_for("small"), {"normal": Path("N")}, Path("R"), "small")[3:9] == [
        "--preset", "small", "--normal", "N", "--out", "R"]
    assert train_arguments(weak, weak.values_for("paper"), {"normal": Path("N"), "abnormal": Path("A")}, Path("R"),
                           "paper")[5:11] == ["--normal", "N", "--abnormal", "A", "--out", "R"]
    # no preset (a record of an earlier version): every value that is set is passed
    args = train_arguments(dual, dual.values_for("paper"), folders, Path("R"), None)
    assert "--preset" not in args and args[args.index("--epochs") + 1] == "250" and "--no-augment" in args


def test_bad_folders_and_values_are_refused_by_name(methods_json: dict) -> None:
    catalog = parse_methods_json(json.dumps(methods_json))
    dual, oneclass, weak = (catalog.method(n) for n in ("dual", "oneclass", "weak"))
    with pytest.raises(KeyError, match="no option 'colour'"):
        dual.values_for("paper", {"colour": 1})
    with pytest.raises(ValueError, match="needs the unlabeled folder"):
        train_arguments(dual, dual.values_for("paper"), {"normal": Path("N")}, Path("R"), "paper")
    with pytest.raises(ValueError, match="does not use a unlabeled folder"):
        train_arguments(oneclass, oneclass.values_for("paper"), {"normal": Path("N"), "unlabeled": Path("U")},
                        Path("R"), "paper")
    with pytest.raises(ValueError, match="needs the abnormal folder"):
        train_arguments(weak, weak.values_for("paper"), {"normal": Path("N")}, Path("R"), "paper")
    with pytest.raises(ValueError, match="Backbone: 'vit' is not one of"):
        train_arguments(dual, dual.values_for("paper", {"backbone": "vit"}), {"normal": Path("N"), "unlabeled": Path("U")},
                        Path("R"), "paper")
    with pytest.raises(ValueError, match="K \\(networks per module\\) must be at most 16, got 17"):
        train_arguments(dual, dual.values_for("paper", {"members": 17}), {"normal": Path("N"), "unlabeled": Path("U")},
                        Path("R"), "paper")


def test_check_problem_lines() -> None:
    p = CheckProblem.from_event({"event": "problem", "severity": "error", "option": "--batch-size", "message": "too big"})
    assert (p.severity, p.option, p.message) == ("error", "batch_size", "too big")
    assert CheckProblem.from_event({"event": "problem", "severity": "warning", "option": None, "message": "m"}).option is None
    assert CheckProblem.from_event({"event": "problem", "severity": "note", "option": "--calibration-fraction",
                                    "message": "60 known normals will be held out"}).severity == "note"
    with pytest.raises(ValueError, match="severity error\\|warning\\|note and a message"):
        CheckProblem.from_event({"event": "problem", "severity": "fatal", "message": "m"})


def test_the_newer_methods_options_have_words_for_labels() -> None:
    # MSACL, MSACL + IGD and MemMC-MAE name options by abbreviation: capitalised, "dim" read "Dim", "xi" "Xi"
    def label(name: str) -> str:
        return options.Option(name=name, flag="--" + name.replace("_", "-"), type="int", help="").label

    assert label("dim") == "Decoder and critic width" and label("xi") == "ξ (reconstruction share)"
    assert label("msacl_loss") == "MSACL loss" and label("padim_dims") == "PaDiM channels"
    assert label("multi_level") == "Multi-level decoder" and label("kappa") == "κ (same-class negatives)"
    # WSCXR's backbone is a masked autoencoder or a timm CNN (densenet121): not "Autoencoder"
    assert label("backbone") == "Backbone" and label("mae_size") == "MAE size"
    assert label("some_new_option") == "Some new option"  # anything else: its name, capitalised
