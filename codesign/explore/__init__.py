"""Exploration: BoTorch multi-objective Bayesian optimisation over ensembles, schedules and accelerator knobs.

Public API: :func:`hypervolume`, :func:`pareto_mask`, :class:`StudyConfig` / :func:`load_study_config`,
:class:`Space`, :func:`build_context` / :func:`run_study` / :func:`run_method`.
"""

from codesign.explore.config import StudyConfig, load_study_config  # noqa: F401
from codesign.explore.hypervolume import hypervolume, log_hv_difference  # noqa: F401
from codesign.explore.pareto import pareto_front, pareto_mask  # noqa: F401
from codesign.explore.space import Configuration, Space  # noqa: F401


def __getattr__(name: str):
    # the study driver pulls in torch/botorch; import it only when asked for
    if name in ("build_context", "run_study", "run_method", "StudyContext", "StudyResult"):
        from codesign.explore import study

        return getattr(study, name)
    raise AttributeError(name)
