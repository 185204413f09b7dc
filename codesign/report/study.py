"""Report collector: an explore study as explore stored it — its config, points and result.

The fronts, hypervolume traces and recommendations are read from the study's persisted
:class:`~codesign.records.StudyResult` (:mod:`codesign.explore.results` computed them on the study's
own objective directions); nothing here ranks points again. A study without a stored result (still
running, or interrupted) shows its points and a note saying how to finish it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from codesign.records import StudyResult, VariantSpec


@dataclass
class StudyView:
    """What the report shows of a study (frames are :mod:`codesign.explore.results` tables)."""

    name: str
    config: dict[str, Any]
    typed: Any = None  # the config as a StudyConfig, None if it does not validate (another version)
    result: StudyResult | None = None
    n_points: int = 0
    points: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per distinct configuration
    front: pd.DataFrame = field(default_factory=pd.DataFrame)
    recommendations: pd.DataFrame = field(default_factory=pd.DataFrame)
    hv: pd.DataFrame = field(default_factory=pd.DataFrame)
    objectives: list[str] = field(default_factory=list)
    directions: list[str] = field(default_factory=list)
    constraints: list[tuple[str, str, float]] = field(default_factory=list)
    note: str | None = None

    @property
    def first_spec(self) -> str | None:
        specs = self.config.get("specs")
        return specs[0] if isinstance(specs, list) and specs else None


def study_view(store, name: str, specs: dict[str, VariantSpec]) -> StudyView:
    """Read study ``name`` (config, points, stored result) into a :class:`StudyView`."""
    from codesign.config import ConfigError, validate_config
    from codesign.explore.config import StudyConfig, stored_study_config
    from codesign.explore.results import distinct_frame, front_frame, hypervolume_frame, recommendations_frame

    view = StudyView(name, stored_study_config(store.study_config(name)))
    try:
        view.typed = validate_config(StudyConfig, view.config, f"study {name!r}")
        view.constraints = view.typed.constraints.bounds()
    except ConfigError:
        view.typed = None
    points = store.study_points(name)
    view.n_points = len(points)
    view.result = store.study_result(name)
    view.points = distinct_frame(points, specs, view.result)
    if view.result is None:
        view.note = (f"Study {name!r} has {len(points)} evaluated points but no stored result yet: re-run "
                     "`codesign explore` with the same config and store to finish it." if points else
                     f"Study {name!r} has no evaluated points yet.")
        return view
    r = view.result
    view.objectives, view.directions = r.objective_names, r.directions
    view.front = front_frame(r, points, specs)
    view.recommendations = recommendations_frame(r, points, specs)
    view.hv = hypervolume_frame(r)
    if r.n_points != len(points):
        view.note = (f"Study {name!r} has {len(points)} points but its stored result covers {r.n_points}: re-run "
                     "`codesign explore` to bring it up to date.")
    return view
