"""Every keyboard shortcut of the app, in one table (the actions, the help dialog and the README
table are all made from it)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shortcut:
    """One action's shortcut.

    Attributes:
        action: the action's id (the main window's action table uses it).
        text: the menu text.
        keys: key sequences in Qt's portable text form ("Ctrl+O"); the first is shown in menus.
        group: the help dialog's section.
    """

    action: str
    text: str
    keys: tuple[str, ...]
    group: str


SHORTCUTS: tuple[Shortcut, ...] = (
    Shortcut("open_folder", "Open folder…", ("Ctrl+O",), "Files"),
    Shortcut("add_files", "Add folders or files…", ("Ctrl+Shift+O",), "Files"),
    Shortcut("open_demo", "Open demo study", ("Ctrl+Shift+D",), "Files"),
    Shortcut("export_csv", "Export results to CSV…", ("Ctrl+E",), "Files"),
    Shortcut("quit", "Quit", ("Ctrl+Q",), "Files"),
    Shortcut("next_case", "Next case (in the Studies tab: next study, on its lead image)", ("J",), "Worklist"),
    Shortcut("previous_case", "Previous case (in the Studies tab: previous study)", ("K",), "Worklist"),
    Shortcut("next_flagged", "Next unread flagged case (in the Studies tab: next flagged study not read)", ("N",),
             "Worklist"),
    Shortcut("resort", "Re-sort the worklist (place new scores)", ("S",), "Worklist"),
    Shortcut("focus_filter", "Filter the worklist (Esc leaves the filter)", ("Ctrl+F",), "Worklist"),
    Shortcut("flagged_only", "Show flagged cases only", ("Ctrl+Shift+F",), "Worklist"),
    Shortcut("unread_only", "Show unread cases only", ("Ctrl+U",), "Worklist"),
    Shortcut("show_identifiers", "Show patient identifiers", ("Ctrl+Shift+I",), "Worklist"),
    Shortcut("compare_earlier", "Compare with earlier study (the patient's prior beside the current study)", ("P",),
             "Worklist"),
    Shortcut("toggle_read", "Mark read / unread", ("M",), "Reading"),
    Shortcut("mark_agree", "Mark: agree with the flag", ("Y",), "Reading"),
    Shortcut("mark_disagree", "Mark: disagree with the flag", ("D",), "Reading"),
    Shortcut("mark_normal", "Mark: confirmed normal", ("O",), "Reading"),
    Shortcut("mark_abnormal", "Mark: confirmed abnormal", ("X",), "Reading"),
    Shortcut("comment", "Comment on the case…", ("E",), "Reading"),
    Shortcut("fit", "Fit image to window", ("F",), "Viewer"),
    Shortcut("one_to_one", "Zoom 1:1 (one image pixel per screen pixel)", ("1",), "Viewer"),
    Shortcut("zoom_in", "Zoom in", ("+", "="), "Viewer"),
    Shortcut("zoom_out", "Zoom out", ("-",), "Viewer"),
    Shortcut("invert", "Invert gray scale", ("I",), "Viewer"),
    Shortcut("auto_window", "Auto window (histogram)", ("A",), "Viewer"),
    Shortcut("full_window", "Full-range window", ("Shift+A",), "Viewer"),
    Shortcut("next_preset", "Next window preset from the file", ("W",), "Viewer"),
    Shortcut("reset_window", "Reset window to the file's", ("R",), "Viewer"),
    Shortcut("toggle_heatmap", "Show heatmap", ("H",), "Heatmap"),
    Shortcut("toggle_contour", "Show contour at the operating point", ("C",), "Heatmap"),
    Shortcut("opacity_up", "More heatmap opacity", ("]",), "Heatmap"),
    Shortcut("opacity_down", "Less heatmap opacity", ("[",), "Heatmap"),
    Shortcut("load_detector", "Load detector…", ("Ctrl+L",), "Detector"),
    Shortcut("score", "Score unscored files", ("Ctrl+R",), "Detector"),
    Shortcut("cancel", "Cancel scoring", ("Esc",), "Detector"),
    Shortcut("detector_card", "Detector card", ("Ctrl+I",), "Detector"),
    Shortcut("specificity_90", "Operating point: 90 % specificity", ("Ctrl+9",), "Detector"),
    Shortcut("specificity_95", "Operating point: 95 % specificity", ("Ctrl+5",), "Detector"),
    Shortcut("specificity_99", "Operating point: 99 % specificity", ("Ctrl+0",), "Detector"),
    Shortcut("help", "Keyboard shortcuts", ("F1", "?"), "Help"),
)
MOUSE: tuple[tuple[str, str], ...] = (
    ("Wheel", "zoom at the pointer"),
    ("Left drag", "pan"),
    ("Right drag, or Ctrl + left drag", "window/level: horizontal = width (contrast), vertical = centre (brightness)"),
    ("Double click", "fit image to window"),
    ("Drop folders or files", "add them to the worklist"),
)


def by_action() -> dict[str, Shortcut]:
    """The table keyed by action id."""
    return {s.action: s for s in SHORTCUTS}


def markdown_table() -> str:
    """The shortcuts as a Markdown table (for the README)."""
    lines = ["| Keys | Action |", "|---|---|"]
    for s in SHORTCUTS:
        keys = ", ".join(f"`{k}`" for k in s.keys)
        lines.append(f"| {keys} | {s.text.rstrip('…')} |")
    for what, does in MOUSE:
        lines.append(f"| {what} | {does} |")
    return "\n".join(lines)
