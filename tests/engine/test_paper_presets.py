"""A preset named after a paper holds the paper's stated numbers; every other difference is a listed deviation.

Each method states its paper's numbers in its declaration (``Method.paper_stated``, with the
source beside them); this test holds every registered method's "paper" preset to them, so a new
method is checked by registering, with no edit here.
"""
from __future__ import annotations

import pytest

from cxrscreen.engine.methods import registry


def _value(config, key):
    obj = config
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def _with_paper_preset() -> list[str]:
    return sorted(name for name, m in registry().items() if any(p.name == "paper" for p in m.presets))


@pytest.mark.parametrize("name", _with_paper_preset())
def test_the_paper_preset_holds_the_papers_numbers(name):
    m = registry()[name]
    assert m.paper_stated, f"{name} has a paper preset but states none of the paper's numbers (Method.paper_stated)"
    config = m.config("paper")
    wrong = {k: (_value(config, k), v) for k, v in m.paper_stated.items() if _value(config, k) != v}
    assert not wrong, f"{name} paper preset differs from the paper (got, paper): {wrong}"


def test_every_preset_says_how_it_differs_from_the_paper():
    for name, m in registry().items():
        for preset in m.presets:
            if not preset.as_published:
                assert preset.deviations, f"{name}/{preset.name}: not as published, but no deviation is listed"
    # AMAE's MAE is pre-trained on the run's own images, not the paper's chest X-ray MAE: not "as published"
    amae = registry()["amae"].preset("paper")
    assert not amae.as_published and any("pre-trained" in d for d in amae.deviations)
    ddad = registry()["ddad"].preset("paper")
    assert ddad.as_published and any("held out for calibration" in d for d in ddad.deviations)
    for preset in registry()["ddad"].presets:
        assert preset.as_published == (preset.name == "paper"), preset.name  # the default (robust-framing) is not

