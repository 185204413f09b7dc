"""Exploration: BoTorch multi-objective Bayesian optimisation over ensembles, schedules and accelerator knobs.

Public API: :class:`StudyConfig` / :func:`load_study_config`, :class:`Space`, :func:`build_context` /
:func:`run_study` / :func:`run_method`, and :func:`summarize` (a study's fronts, hypervolume traces
and recommendations, stored as a :class:`~codesign.records.StudyResult`). Fronts and hypervolumes
themselves live in :mod:`codesign.pareto`, objectives in :mod:`codesign.objectives`.
"""

from codesign.explore.config import StudyConfig, load_study_config  # noqa: F401
from codesign.explore.space import Configuration, Space  # noqa: F401


def __getattr__(name: str):
    # the study driver pulls in torch/botorch; import it only when asked for
    if name in ("build_context", "run_study", "run_method", "StudyContext"):
        from codesign.explore import study

        return getattr(study, name)
    if name == "summarize":
        from codesign.explore.results import summarize

        return summarize
    raise AttributeError(name)
