"""One table of shortcuts: no conflicts, every one wired, the README and help show the same."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QKeySequence

from cxrscreen.app.help import shortcuts_html
from cxrscreen.app.shortcuts import SHORTCUTS, by_action, markdown_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_no_two_actions_share_a_key() -> None:
    keys = [QKeySequence(k).toString() for s in SHORTCUTS for k in s.keys]
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)
    assert len(by_action()) == len(SHORTCUTS)


def test_every_shortcut_is_an_action_of_the_window(qtbot, settings_path, tmp_path) -> None:
    from cxrscreen.app.library import ModelLibrary
    from cxrscreen.app.main_window import MainWindow
    from cxrscreen.app.settings import AppSettings

    w = MainWindow(AppSettings(settings_path), ModelLibrary(tmp_path / "lib"))
    try:
        for s in SHORTCUTS:
            action = w.actions[s.action]
            assert [k.toString() for k in action.shortcuts()] == [QKeySequence(k).toString() for k in s.keys]
    finally:
        w.close()
        qtbot.waitUntil(lambda: not w.isVisible(), timeout=10_000)
        w.deleteLater()


def test_readme_and_help_list_the_same_shortcuts(qtbot) -> None:
    assert markdown_table() in README.read_text(encoding="utf-8"), "README's shortcut table is stale"
    html = shortcuts_html()
    assert all(s.text.rstrip("…") in html for s in SHORTCUTS)
