import pytest

from codesign.config import ConfigError


def test_subtask_selection_filters_before_subsampling(data_dir):
    from codesign.evaluate import get_task

    items = get_task("ethics", subtasks=["zero_shot", "evasive"]).load(data_dir, limit=10, seed=0)
    assert len(items) == 10 and {it.subtask for it in items} == {"zero_shot", "evasive"}
    every = get_task("ethics").load(data_dir, limit=10, seed=0)
    assert {it.subtask for it in every} == {"zero_shot", "few_shot", "jailbreak", "evasive"}


def test_unknown_subtask_names_the_allowed_ones(data_dir):
    from codesign.evaluate import get_task

    with pytest.raises(ConfigError, match=r"mmlu: unknown subtasks \['3shot'\].*0shot"):
        get_task("mmlu", subtasks=["3shot"]).load(data_dir, limit=4)


def test_study_config_subtasks_validated(tmp_path):
    from codesign.explore import load_study_config

    cfg = load_study_config(None, subtasks={"mmlu": ["0shot"]})
    assert cfg.subtasks == {"mmlu": ["0shot"]}
    with pytest.raises(ConfigError, match="mmmlu"):
        load_study_config(None, subtasks={"mmmlu": ["0shot"]})
