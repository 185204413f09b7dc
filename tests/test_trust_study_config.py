"""The reproduction study's config must stay valid as the code evolves (issue 9)."""

from pathlib import Path

STUDY = Path(__file__).resolve().parents[1] / "experiments" / "trust_study" / "config.yaml"


def test_trust_study_config_is_valid_and_covers_the_study(data_dir):
    from codesign.evaluate import get_task
    from codesign.explore import load_study_config
    from codesign.quantize import Catalogue

    cfg = load_study_config(STUDY)
    assert set(cfg.tasks) == {"mmlu", "advglue", "fairness", "ethics", "ood"}
    assert {"h100-sxm", "mpu-hypo"} <= set(cfg.specs)
    specs = Catalogue(model=cfg.model, **cfg.catalogue).variants()
    assert {(s.method, s.bits) for s in specs if not s.is_dense} == {
        (m, b) for m in ("rtn", "gptq", "awq") for b in (2, 3, 4, 8)}
    assert any(s.is_dense for s in specs)
    for task, subs in cfg.subtasks.items():  # every named subtask exists in the data
        items = get_task(task, subtasks=subs, protocol=cfg.protocol).load(data_dir, limit=cfg.limit, seed=cfg.seed)
        assert {it.subtask for it in items} == set(subs)
