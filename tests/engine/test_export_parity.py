"""The export's parity criterion: absolute up to 1, relative above (engine/export.py)."""
from __future__ import annotations

import numpy as np

from cxrscreen.engine.export import _scaled_difference


def test_small_values_are_compared_absolutely() -> None:
    ref = np.array([0.0, 0.5, 1.0], np.float32)
    assert _scaled_difference(ref + 2e-4, ref) > 1e-4  # 2e-4 off on values <= 1: refused
    assert _scaled_difference(ref + 5e-5, ref) <= 1e-4


def test_large_values_are_compared_relatively() -> None:
    ref = np.array([2398.8, 73.9, 0.2], np.float32)
    rounded = ref + np.array([1.7e-3, 8e-5, 0.0], np.float32)  # float32 rounding at that scale
    assert _scaled_difference(rounded, ref) <= 1e-4
    assert _scaled_difference(ref * 1.001, ref) > 1e-4  # a real 0.1 % error is still refused


def test_every_named_set_of_views_is_offered_where_it_is_chosen() -> None:
    import argparse
    import typing

    from cxrscreen.engine import export_cli
    from cxrscreen.engine.export import VIEW_SETS
    from cxrscreen.engine.methods import registry
    from cxrscreen.engine.methods.base import TestTimeViews

    parser = argparse.ArgumentParser()
    export_cli.add_arguments(parser)
    views = next(a for a in parser._actions if a.dest == "views")
    assert set(views.choices) == set(VIEW_SETS) == set(typing.get_args(TestTimeViews))
    offering = {name: next(o for o in m.options if o.name == "test_time_views")
                for name, m in registry().items() if any(o.name == "test_time_views" for o in m.options)}
    assert set(offering) == {"ddad", "wscxr"}  # where they were measured to help: DDAD (3 seeds), WSCXR (1 encoder of 3)
    assert all(set(o.choices) == set(VIEW_SETS) for o in offering.values())
    assert VIEW_SETS["none"] == ((1.0, 0.0, 0.0),) and VIEW_SETS["framing"][0] == (1.0, 0.0, 0.0)
