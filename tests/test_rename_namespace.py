"""packaging/rename_namespace.py: the old top-level names become cxrscreen.*, once, and nothing else.

This file is never rewritten by the script (it holds the old forms on purpose).
"""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "packaging" / "rename_namespace.py"
_spec = importlib.util.spec_from_file_location("cxrscreen_rename_namespace", SCRIPT)
rn = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rn)

CASES = [
    # imports: every spelling, the name bound by the statement unchanged
    ("from engine.io import scan_folder\n", "from cxrscreen.engine.io import scan_folder\n"),
    ("    from app import main as app_main\n", "    from cxrscreen.app import main as app_main\n"),
    ("from models.ddad import (\n    A,\n)\n", "from cxrscreen.models.ddad import (\n    A,\n)\n"),
    ("import engine\n", "from cxrscreen import engine\n"),
    ("import engine.train_cli as t\n", "import cxrscreen.engine.train_cli as t\n"),
    ("    import engine.methods.ddad  # noqa\n",
     "    import cxrscreen.engine.methods.ddad\n    from cxrscreen import engine  # noqa\n"),
    ("import os, engine\n", "import os\nfrom cxrscreen import engine\n"),
    ('code = "import sys; import app.main; print(1)"\n',
     'code = "import sys; import cxrscreen.app.main; from cxrscreen import app; print(1)"\n'),
    ('code = ("from engine.cli import main; "\n', 'code = ("from cxrscreen.engine.cli import main; "\n'),
    # module names in strings: whole strings, f-string prefixes, patterns, entry points, -m
    ('monkeypatch.setattr("engine.detector.nvidia_gpu_present", f)\n',
     'monkeypatch.setattr("cxrscreen.engine.detector.nvidia_gpu_present", f)\n'),
    ("names = [f'engine.methods.{name}' for name in x]\n", "names = [f'cxrscreen.engine.methods.{name}' for name in x]\n"),
    ('P = ["models.*", "engine.methods.*.recipe"]\n', 'P = ["cxrscreen.models.*", "cxrscreen.engine.methods.*.recipe"]\n'),
    ('EP = "engine.cli:main"\n', 'EP = "cxrscreen.engine.cli:main"\n'),
    ('cmd = [sys.executable, "-m", "engine", "score"]\n', 'cmd = [sys.executable, "-m", "cxrscreen.engine", "score"]\n'),
    ('run(["-m", "app.qt_libs"])\n', 'run(["-m", "cxrscreen.app.qt_libs"])\n'),
    ('"""`python -m engine ...` is the command."""\n', '"""`python -m cxrscreen.engine ...` is the command."""\n'),
    # a checkout root on the path: its parent-package folder first
    ("sys.path.insert(0, str(REPO))\n", 'sys.path[:0] = [str(REPO / "packaging" / "src"), str(REPO)]\n'),
    ('env = {"PYTHONPATH": str(ROOT), "PATH": p}\n',
     'env = {"PYTHONPATH": os.pathsep.join([str(ROOT / "packaging" / "src"), str(ROOT)]), "PATH": p}\n'),
]
UNCHANGED = [
    'f = tmp_path / "engine.py"\n',             # a file name
    'library = root / "models"\n',              # a folder, not a module
    'FIRST_PARTY = ("app", "engine", "models")\n',
    'q.value("engine/command")\n',              # a settings key
    '"""engine.synth.generate_chest: determinism, ranges."""\n',  # prose
    "the app imports engine modules only\n",
    "from enginex import y\nimport application\nimport models_extra as m\n",
    "sys.path.insert(0, str(FAKE.parent))\n",
    "    python -m engines\n",
    "see :mod:`engine.io` and ``models.mae``\n",  # documentation references stay short
]


@pytest.mark.parametrize(("old", "new"), CASES)
def test_each_known_form_is_rewritten_once(old: str, new: str) -> None:
    assert rn.rewrite_text(old, "python") == new
    assert rn.rewrite_text(new, "python") == new  # idempotent


@pytest.mark.parametrize("text", UNCHANGED)
def test_what_is_not_a_module_name_is_left_alone(text: str) -> None:
    assert rn.rewrite_text(text, "python") == text


def test_the_rewritten_code_binds_the_same_names(tmp_path: Path) -> None:
    # the rewritten statements run and bind what the old ones bound
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "cxrscreen" / "engine" / "methods").mkdir(parents=True)
    for d in ("cxrscreen", "cxrscreen/engine", "cxrscreen/engine/methods"):
        (tmp_path / "pkg" / d / "__init__.py").write_text("")
    (tmp_path / "pkg" / "cxrscreen" / "engine" / "methods" / "ddad.py").write_text("X = 1\n")
    code = rn.rewrite_text("import engine.methods.ddad\nimport engine.methods.ddad as d\nimport os, engine\n"
                           "print(engine.methods.ddad.X, d.X, engine.__name__)\n", "python")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path / "pkg", capture_output=True, text=True,
                       env={"PYTHONPATH": str(tmp_path / "pkg")})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "1", "cxrscreen.engine"]


def test_text_files_get_commands_and_code_lines_only() -> None:
    text = textwrap.dedent("""\
        Run `python -m engine score DIR` (or `cxrscreen score`); the app lives in `app/`.

            PYTHONPATH=$PWD python -c "import engine; print(engine.__file__)"
        The `engine.methods` package and the file engine.py stay as they are.
    """)
    assert rn.rewrite_text(text, "text") == textwrap.dedent("""\
        Run `python -m cxrscreen.engine score DIR` (or `cxrscreen score`); the app lives in `app/`.

            PYTHONPATH=$PWD python -c "from cxrscreen import engine; print(engine.__file__)"
        The `engine.methods` package and the file engine.py stay as they are.
    """)


def _mini_tree(root: Path) -> None:
    for top in rn.TOPS:
        (root / top).mkdir(parents=True)
        (root / top / "__init__.py").write_text("")
    (root / "engine" / "methods" / "newmethod").mkdir(parents=True)
    (root / "engine" / "methods" / "__init__.py").write_text("")
    (root / "engine" / "methods" / "newmethod" / "__init__.py").write_text("from engine.io import x\n")
    (root / "tests").mkdir()
    (root / "tests" / "test_new.py").write_text('import app.main\npatch("engine.cli.main")\n')
    (root / "notes.txt").write_text("python -m engine\n")  # not a file kind the script rewrites
    (root / "pyproject.toml").write_text(textwrap.dedent("""\
        [project.scripts]
        cxrscreen = "engine.cli:main"

        [tool.setuptools]
        package-dir = {"cxrscreen" = "packaging/src/cxrscreen"}
        packages = [
            "cxrscreen",
        ]

        [tool.cxrscreen.profiles]
        engine-modules = ["models.*"]
    """))


def test_a_tree_it_has_never_seen(tmp_path: Path) -> None:
    _mini_tree(tmp_path)
    assert rn.main([str(tmp_path), "--check"]) == 1
    assert (tmp_path / "tests" / "test_new.py").read_text().startswith("import app.main")  # --check changed nothing
    assert rn.main([str(tmp_path)]) == 0
    assert (tmp_path / "engine" / "methods" / "newmethod" / "__init__.py").read_text() == "from cxrscreen.engine.io import x\n"
    assert (tmp_path / "tests" / "test_new.py").read_text() == (
        'import cxrscreen.app.main\nfrom cxrscreen import app\npatch("cxrscreen.engine.cli.main")\n')
    assert (tmp_path / "notes.txt").read_text() == "python -m engine\n"
    pyproject = (tmp_path / "pyproject.toml").read_text()
    assert 'cxrscreen = "cxrscreen.engine.cli:main"' in pyproject and '["cxrscreen.models.*"]' in pyproject
    listed = pyproject.split("packages = [", 1)[1].split("]", 1)[0].split()
    assert listed == ['"cxrscreen",', '"cxrscreen.app",', '"cxrscreen.engine",', '"cxrscreen.engine.methods",',
                      '"cxrscreen.engine.methods.newmethod",', '"cxrscreen.models",']
    assert rn.main([str(tmp_path), "--check"]) == 0  # idempotent


def test_a_pyproject_without_the_package_list_changes_no_file(tmp_path: Path) -> None:
    _mini_tree(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[project.scripts]\ncxrscreen = "engine.cli:main"\n')
    before = (tmp_path / "tests" / "test_new.py").read_text()
    with pytest.raises(SystemExit, match="no `packages = \\[` list"):
        rn.main([str(tmp_path)])
    assert (tmp_path / "tests" / "test_new.py").read_text() == before


def test_not_a_checkout_is_refused(tmp_path: Path, capsys) -> None:
    assert rn.main([str(tmp_path)]) == 2
    assert "is not a cxrscreen checkout" in capsys.readouterr().err


def test_this_tree_is_renamed(tmp_path: Path) -> None:
    # after a merge, rerun the script (README, "Development notes"): nothing may be left to rewrite
    r = subprocess.run([sys.executable, str(SCRIPT), str(REPO), "--check", "--verbose"], capture_output=True, text=True)
    assert r.returncode == 0, "run `python packaging/rename_namespace.py`; it would change:\n" + r.stdout
