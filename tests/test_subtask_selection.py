import pytest

from codesign.config import ConfigError


def test_subtask_selection_filters_before_subsampling(data_dir):
    from codesign.evaluate import get_task

    items = get_task("ethics", subtasks=["zero_shot", "evasive"], protocol="codesign").load(data_dir, limit=10, seed=0)
    assert len(items) == 10 and {it.subtask for it in items} == {"zero_shot", "evasive"}
    every = get_task("ethics", protocol="codesign").load(data_dir, limit=10, seed=0)
    assert {it.subtask for it in every} == {"zero_shot", "few_shot", "jailbreak", "evasive"}
    # the decodingtrust protocol: one subtask per DT result file, every one kept by --limit
    dt = get_task("ethics", subtasks=["zero_shot", "evasive/2"]).load(data_dir, limit=10, seed=0)
    assert len(dt) == 10 and {it.subtask for it in dt} == {"zero_shot", "evasive/2"}
    every = get_task("ethics").load(data_dir, limit=12, seed=0)
    assert {it.subtask for it in every} == {"zero_shot", "few_shot"} | {f"{k}/{i}" for k in ("jailbreak", "evasive")
                                                                           for i in range(1, 6)}
    # a group name selects every subtask under it
    group = get_task("ethics", subtasks=["jailbreak"]).load(data_dir, limit=10, seed=0)
    assert {it.subtask for it in group} == {f"jailbreak/{i}" for i in range(1, 6)}


def test_unknown_subtask_names_the_allowed_ones(data_dir):
    from codesign.evaluate import get_task

    with pytest.raises(ConfigError, match=r"mmlu \(codesign protocol\): unknown subtasks \['3shot'\].*0shot"):
        get_task("mmlu", subtasks=["3shot"], protocol="codesign").load(data_dir, limit=4)
    with pytest.raises(ConfigError, match=r"mmlu \(decodingtrust protocol\): unknown subtasks \['0shot'\].*5shot"):
        get_task("mmlu", subtasks=["0shot"]).load(data_dir, limit=4)


def test_study_config_subtasks_validated(tmp_path):
    from codesign.explore import load_study_config

    cfg = load_study_config(None, subtasks={"mmlu": ["0shot"]})
    assert cfg.subtasks == {"mmlu": ["0shot"]}
    with pytest.raises(ConfigError, match="mmmlu"):
        load_study_config(None, subtasks={"mmmlu": ["0shot"]})
