"""Rewrite a source tree from the top-level packages ``app``, ``engine``, ``models`` to
``cxrscreen.app``, ``cxrscreen.engine``, ``cxrscreen.models`` (one namespace).

    python packaging/rename_namespace.py [ROOT] [--check] [--verbose]

Idempotent: a tree already in the new form is left as it is (``--check`` exits 1 when a file
would change, and changes nothing). It rewrites, in every ``*.py``, ``*.spec``, ``Makefile``,
``.ci/run`` and ``README.md`` of the tree (the files git lists, tracked or not ignored; else
every such file outside build/, dist/ and hidden folders), but not this script and its test:

1. import statements, at the start of a line or of a statement (after ``;``, or a quote that
   opens a ``python -c`` string):
   ``from engine.x import y`` -> ``from cxrscreen.engine.x import y``;
   ``import engine.x as e`` -> ``import cxrscreen.engine.x as e``;
   ``import engine`` -> ``from cxrscreen import engine`` (the name ``engine`` stays bound);
   ``import engine.x`` -> ``import cxrscreen.engine.x`` and ``from cxrscreen import engine``;
   other names of the same statement (``import os, engine``) are kept;
2. module names in string literals: a quoted dotted name that starts with one of the three
   packages and is the whole string (``"engine.scoring.open"``, patch targets, import_module
   arguments, hidden imports), an f-string prefix (``f"engine.methods.{name}"``), an fnmatch
   pattern (``"engine.methods.*.recipe"``) or an entry point (``"engine.cli:main"``); not file
   names (``"engine.py"``, ``"models.json"``) nor prose (``"engine. The..."``);
3. ``"-m", "engine"`` (a module run in an argument list) and ``-m engine`` in command lines
   (docs, Makefiles, shell strings);
4. a checkout root put on ``sys.path`` / ``PYTHONPATH`` (``sys.path.insert(0, str(REPO))``,
   ``"PYTHONPATH": str(REPO)``, for the root names REPO, ROOT, REPO_ROOT): its
   ``packaging/src`` goes first, where the parent package ``cxrscreen`` lives in a checkout.

In ``pyproject.toml`` it rewrites the string forms (2: ``engine-modules`` patterns, the
``cxrscreen`` entry point) and regenerates ``[tool.setuptools] packages`` from the tree (every
folder with an ``__init__.py`` under app/, engine/, models/), so a package added on another
branch is installed too.

Everything else the namespace needs is not mechanical and is not done here (the
``package-dir`` mapping, the parent package, the settings migration, the boundary test).
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

NAMESPACE = "cxrscreen"
TOPS = ("app", "engine", "models")
# files never rewritten: this script and its test hold the old forms on purpose
SELF = ("packaging/rename_namespace.py", "tests/test_rename_namespace.py")
SKIP_DIRS = {".git", "build", "dist", ".venv", "node_modules", "__pycache__"}
FILE_SUFFIXES = {"py", "pyc", "pyi", "pyd", "so", "json", "jsonl", "onnx", "csv", "tsv", "txt", "ini", "toml", "cfg",
                 "log", "png", "jpg", "svg", "md", "spec", "qss", "sh", "exe", "yaml", "yml", "db", "sqlite", "pt",
                 "pth", "ckpt", "npz", "npy", "zip", "dcm", "html", "part", "lock", "tmp", "bak", "key", "safetensors"}

_TOP = "(?:" + "|".join(TOPS) + ")"
_IDENT = r"[A-Za-z_]\w*"
_DOTTED = rf"{_TOP}(?:\.{_IDENT})*"
# a statement start: the line's start (indentation kept), after ';', or just inside a quote
_START = r"(?P<lead>^[ \t]*|;[ \t]*|(?<=[\"'])[ \t]*)"
_FROM = re.compile(_START + rf"from[ \t]+(?P<mod>{_DOTTED})(?=[ \t]+import\b)", re.M)
_ALIAS = rf"{_IDENT}(?:\.{_IDENT})*(?:[ \t]+as[ \t]+{_IDENT})?"
_IMPORT = re.compile(_START + rf"import[ \t]+(?P<names>{_ALIAS}(?:[ \t]*,[ \t]*{_ALIAS})*)(?=[ \t]*(?:$|;|#|[\"']))", re.M)
# a module name in a string literal (2): the token and what must follow it
_TOKEN = rf"{_TOP}(?:\.(?:{_IDENT}|\*|\{{[^{{}}\"'\n]*\}}))+"
_QUOTED = re.compile(rf"(?P<q>[\"'])(?P<tok>{_TOKEN})(?=(?P=q)|:{_IDENT}(?P=q))")
_DASH_M_ARG = re.compile(rf"(?P<pre>[\"']-m[\"'][ \t]*,[ \t]*[\"'])(?P<tok>{_DOTTED})(?=[\"'])")
_DASH_M_TEXT = re.compile(rf"(?P<pre>(?<![\w-])-m[ \t]+)(?P<tok>{_DOTTED})(?![\w/\\]|\.[A-Za-z_])")
_ROOTS = r"(?:REPO|ROOT|REPO_ROOT)"
_SYS_PATH = re.compile(rf"sys\.path\.insert\(0, str\((?P<root>{_ROOTS})\)\)")
_PYTHONPATH = re.compile(rf"(?P<q>[\"'])PYTHONPATH(?P=q):[ \t]*str\((?P<root>{_ROOTS})\)(?=[,}}\s])")


def _new(module: str) -> str:
    return f"{NAMESPACE}.{module}"


def _rewrite_import(m: re.Match) -> str:
    items = [s.strip() for s in m.group("names").split(",")]
    if not any(re.match(rf"{_TOP}(?:\.|\s|$)", item) for item in items):
        return m.group(0)
    lead = m.group("lead")
    statements: list[str] = []
    for item in items:
        name, _, alias = (p.strip() for p in item.partition(" as ")) if " as " in item else (item, "", "")
        name = name.split()[0]
        top = name.split(".")[0]
        if top not in TOPS:
            statements.append(f"import {item}")
        elif alias:
            statements.append(f"import {_new(name)} as {alias.split()[0]}")
        elif name == top:
            statements.append(f"from {NAMESPACE} import {top}")
        else:
            statements += [f"import {_new(name)}", f"from {NAMESPACE} import {top}"]
    # a line's statements stay on lines of the same indentation; inline ones are joined with ';'
    sep = "\n" + lead if _at_line_start(m) else "; "
    return lead + sep.join(statements)


def _at_line_start(m: re.Match) -> bool:
    text, start = m.string, m.start()
    return start == 0 or text[start - 1] == "\n"


def _rewrite_quoted(m: re.Match) -> str:
    tok = m.group("tok")
    last = tok.rsplit(".", 1)[-1]
    if "." in tok and last.lower() in FILE_SUFFIXES:
        return m.group(0)  # a file name such as "engine.py"
    return m.group("q") + _new(tok)


def rewrite_text(text: str, kind: str) -> str:
    """The rewritten text of a file of ``kind`` ("python", "text" or "pyproject")."""
    if kind == "pyproject":
        return _QUOTED.sub(_rewrite_quoted, text)
    if kind == "python":
        text = _FROM.sub(lambda m: m.group("lead") + "from " + _new(m.group("mod")), text)
        text = _IMPORT.sub(_rewrite_import, text)
        text = _QUOTED.sub(_rewrite_quoted, text)
        text = _DASH_M_ARG.sub(lambda m: m.group("pre") + _new(m.group("tok")), text)
        text = _SYS_PATH.sub(lambda m: f'sys.path[:0] = [str({m.group("root")} / "packaging" / "src"), '
                                       f'str({m.group("root")})]', text)
        text = _PYTHONPATH.sub(lambda m: f'{m.group("q")}PYTHONPATH{m.group("q")}: os.pathsep.join([str('
                                         f'{m.group("root")} / "packaging" / "src"), str({m.group("root")})])', text)
    elif kind == "text":
        # code lines in README code blocks and shell snippets
        text = _FROM.sub(lambda m: m.group("lead") + "from " + _new(m.group("mod")), text)
        text = _IMPORT.sub(_rewrite_import, text)
        text = _DASH_M_ARG.sub(lambda m: m.group("pre") + _new(m.group("tok")), text)
    return _DASH_M_TEXT.sub(lambda m: m.group("pre") + _new(m.group("tok")), text)


def packages(root: Path) -> list[str]:
    """Every package of the tree, by its installed name: the parent and each folder with an
    ``__init__.py`` under app/, engine/, models/."""
    names = [NAMESPACE]
    for top in TOPS:
        for init in sorted((root / top).rglob("__init__.py")):
            parts = init.parent.relative_to(root).parts
            if "__pycache__" not in parts:
                names.append(".".join((NAMESPACE, *parts)))
    return sorted(names)


_PACKAGES = re.compile(r"(?ms)^(?P<head>\[tool\.setuptools\]\n(?:(?!^\[).)*?^packages = \[)(?P<body>.*?)(?=^\])")


def rewrite_pyproject(text: str, root: Path) -> str:
    """pyproject.toml: the string forms, and ``[tool.setuptools] packages`` from the tree."""
    text = rewrite_text(text, "pyproject")
    body = "".join(f'    "{p}",\n' for p in packages(root))
    new, n = _PACKAGES.subn(lambda m: m.group("head") + "\n" + body, text)
    if n != 1:
        raise SystemExit("rename_namespace: pyproject.toml has no `packages = [` list under [tool.setuptools] "
                         "(the non-mechanical part of the rename is missing)")
    return new


def kind_of(rel: str) -> str | None:
    """How a file is rewritten (None: it is not)."""
    name = rel.rsplit("/", 1)[-1]
    if rel in SELF:
        return None
    if rel == "pyproject.toml":
        return "pyproject"
    if name.endswith((".py", ".spec")):
        return "python"
    if name in ("Makefile", "README.md") or rel == ".ci/run":
        return "text"
    return None


def tree_files(root: Path) -> list[str]:
    """The tree's files (relative, '/'-separated): git's list when ``root`` is a checkout."""
    r = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=root,
                       capture_output=True)
    if r.returncode == 0:
        return sorted({p for p in r.stdout.decode().split("\0") if p and (root / p).is_file()})
    out = []
    for f in root.rglob("*"):
        rel = f.relative_to(root)
        if f.is_file() and not any(part in SKIP_DIRS or part.startswith(".") and part != ".ci" for part in rel.parts[:-1]):
            out.append(rel.as_posix())
    return sorted(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", nargs="?", type=Path, default=Path(__file__).resolve().parents[1])
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 when a file would change")
    p.add_argument("--verbose", action="store_true", help="name each file changed")
    args = p.parse_args(argv)
    root = args.root.resolve()
    if not (root / "pyproject.toml").is_file() or not all((root / t / "__init__.py").is_file() for t in TOPS):
        print(f"rename_namespace: {root} is not a cxrscreen checkout (pyproject.toml, app/, engine/, models/)",
              file=sys.stderr)
        return 2
    changed: dict[str, str] = {}  # everything is rewritten in memory first: an error changes no file
    for rel in tree_files(root):
        kind = kind_of(rel)
        if kind is None:
            continue
        old = (root / rel).read_text(encoding="utf-8")
        new = rewrite_pyproject(old, root) if kind == "pyproject" else rewrite_text(old, kind)
        if new != old:
            changed[rel] = new
    for rel, new in changed.items():
        if not args.check:
            (root / rel).write_text(new, encoding="utf-8")
        if args.verbose:
            print(rel)
    print(f"rename_namespace: {len(changed)} file(s) {'would change' if args.check else 'rewritten'}")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    raise SystemExit(main())
