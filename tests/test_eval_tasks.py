"""The codesign protocol's task loaders on the real data files, the stratified subsample, and
task-level scoring (the decodingtrust protocol: tests/test_decodingtrust.py)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from codesign.config import ConfigError
from codesign.evaluate.scoring import score_task
from codesign.evaluate.tasks import get_task, stratified_subsample, task_names
from codesign.evaluate.tasks.ethics_prompts import EVASIVE_SENTENCES, JAILBREAK_PROMPTS
from codesign.records import INVALID, REFUSED


@pytest.fixture(scope="module")
def loaded(data_dir):
    return {name: get_task(name, protocol="codesign").load(data_dir) for name in task_names("codesign")}


def test_registry_and_unknown_task():
    for protocol in ("codesign", "decodingtrust"):
        assert task_names(protocol)[:5] == ["mmlu", "advglue", "fairness", "ethics", "ood"]
        assert get_task("ethics", protocol=protocol).protocol == protocol
    assert get_task("ethics").protocol == "decodingtrust"  # the default protocol
    with pytest.raises(ConfigError, match="unknown task 'toxicity'.*allowed"):
        get_task("toxicity")
    with pytest.raises(ConfigError, match="--protocol: 'helm' is not an evaluation protocol"):
        get_task("ethics", protocol="helm")


def test_item_ids_unique_and_labels_valid(loaded):
    for name, items in loaded.items():
        ids = [it.item_id for it in items]
        assert len(ids) == len(set(ids)), name
        for it in items:
            assert 0 <= it.label < len(it.options), (name, it.item_id)
            assert it.messages[-1]["role"] == "user"


def test_mmlu_counts_and_five_shot_demos_from_dev(loaded, data_dir):
    items = loaded["mmlu"]
    c = Counter(it.subtask for it in items)
    assert c == {"0shot": 14042, "5shot": 14042}
    assert len({it.meta["subject"] for it in items}) == 57
    five = [it for it in items if it.subtask == "5shot"]
    assert all(len(it.messages) == 11 for it in five)  # 5 (user, assistant) pairs + the query
    dev = pd.read_csv(data_dir / "mmlu" / "dev" / "abstract_algebra_dev.csv")
    demo_turns = [m["content"] for m in five[0].messages[:-1] if m["role"] == "user"]
    assert all(any(q in d for q in dev["question"]) for d in demo_turns)
    # demonstrations are never evaluated items
    test_queries = {it.messages[-1]["content"] for it in items}
    assert not test_queries & set(demo_turns)


def test_ethics_demo_pool_is_never_evaluated(loaded, data_dir):
    from codesign.evaluate.tasks.ethics import DEMO_POOL, demo_pool

    items = loaded["ethics"]
    c = Counter(it.subtask for it in items)
    df = pd.read_csv(data_dir / "ethics" / "commonsense" / "cm_test.csv")
    short = df[df["is_short"]]
    assert len(short) == 2109
    assert c["zero_shot"] == c["few_shot"] == 2109 - DEMO_POOL
    n_immoral = int((short["label"] == 1).sum()) - DEMO_POOL // 2
    assert c["jailbreak"] == len(JAILBREAK_PROMPTS) * n_immoral
    assert c["evasive"] == len(EVASIVE_SENTENCES) * n_immoral
    pool_rows = set(demo_pool(short).index)
    assert not pool_rows & {it.meta["row"] for it in items}
    pool_texts = {str(t).strip() for t in short.loc[list(pool_rows), "input"]}
    few = next(it for it in items if it.subtask == "few_shot")
    demos = [m["content"] for m in few.messages[:-1] if m["role"] == "user"]
    assert len(demos) == 8 and all(any(t in d for t in pool_texts) for d in demos)
    jb = [it for it in items if it.subtask == "jailbreak"]
    assert all(it.label == 1 and it.messages[0]["role"] == "system" for it in jb)
    ev = next(it for it in items if it.subtask == "evasive")
    assert EVASIVE_SENTENCES[ev.meta["prompt"] - 1] in ev.messages[-1]["content"]
    assert len(JAILBREAK_PROMPTS) >= 5 and len(EVASIVE_SENTENCES) >= 5


def test_fairness_labels_and_sex_match_decodingtrust_arrays(loaded, data_dir):
    items = loaded["fairness"]
    folder = data_dir / "decodingtrust" / "fairness"
    by_sub: dict[str, list] = {}
    for it in items:
        by_sub.setdefault(it.subtask, []).append(it)
    for sub, its in by_sub.items():
        if sub == "uci":
            continue
        its.sort(key=lambda it: it.item_id)
        gt = np.load(folder / f"gt_labels_adult_{sub}.npy", allow_pickle=False)
        sens = np.load(folder / f"sensitive_attr_adult_{sub}.npy", allow_pickle=False)
        assert [it.label for it in its] == gt.tolist(), sub
        assert [it.meta["sex"] for it in its] == sens.tolist(), sub
        assert all(f"sex {it.meta['sex']}" in it.messages[-1]["content"] for it in its)
    uci = by_sub["uci"]
    assert Counter((it.meta["sex"], it.label) for it in uci) == {
        ("Female", 0): 50, ("Female", 1): 50, ("Male", 0): 50, ("Male", 1): 50}
    assert "predict whether the annual income" in uci[0].messages[-1]["content"]
    few = next(it for it in items if it.subtask.startswith("32_"))
    assert few.meta["shots"] == 32 and len(few.messages) == 1 + 64 + 1


def test_ood_items(loaded):
    items = loaded["ood"]
    c = Counter(it.subtask for it in items)
    assert c == {"style": 10 * 872, "style_fewshot": 4 * 872, "knowledge_2020": 855, "knowledge_2023": 263}
    k = next(it for it in items if it.subtask == "knowledge_2023")
    assert k.refusal_option == "4" and k.continuations == ["0", "1", "2", "3", "4"]
    assert k.continuation_label(4) == REFUSED
    assert "4 : I don't know" in k.messages[-1]["content"]
    task = get_task("ood", protocol="codesign")
    assert task.keeps_refusal("knowledge_2023") and not task.keeps_refusal("style")


def test_advglue_reads_extra_files_with_the_same_schema(loaded, tmp_path, data_dir):
    assert Counter(it.subtask for it in loaded["advglue"]) == {
        "sst2": 148, "qqp": 78, "mnli": 121, "mnli-mm": 162, "qnli": 148, "rte": 81}
    extra = tmp_path / "alpaca.json"
    extra.write_text(json.dumps({"sst2": [{"idx": 0, "sentence": "great film", "label": 1}]}))
    items = get_task("advglue", files=[extra], protocol="codesign").load(data_dir)
    assert [it.item_id for it in items if it.subtask == "alpaca/sst2"] == ["alpaca/sst2/00000"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"sst2": [{"idx": 0, "sentence": "x", "label": 7}]}))
    with pytest.raises(ConfigError, match=r"bad.json: sst2\[0\].label = 7 \(allowed: 0..1\)"):
        get_task("advglue", files=[bad], protocol="codesign").load(data_dir)


def test_missing_data_dir_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="mmlu"):
        get_task("mmlu", protocol="codesign").load(tmp_path)


def test_stratified_subsample_equal_shares_superset_and_seeded(loaded):
    items = loaded["ethics"]
    small = stratified_subsample(items, 20, seed=0)
    assert Counter(it.subtask for it in small) == {"zero_shot": 5, "few_shot": 5, "jailbreak": 5, "evasive": 5}
    big = stratified_subsample(items, 60, seed=0)
    assert {it.item_id for it in small} <= {it.item_id for it in big}
    other = stratified_subsample(items, 20, seed=1)
    assert {it.item_id for it in small} != {it.item_id for it in other}
    assert [it.item_id for it in small] == sorted(it.item_id for it in small)
    # a subtask smaller than its share gives the rest to the others
    adv = stratified_subsample(loaded["advglue"], 700, seed=0)
    assert len(adv) == 700 and Counter(it.subtask for it in adv)["qqp"] == 78
    assert len(stratified_subsample(items, None)) == len(items)


def _frame(rows):
    return pd.DataFrame(rows, columns=["item_id", "subtask", "label", "meta"])


def test_task_scores_compose_the_documented_formulas():
    # ethics: zero-shot acc 1/2, few-shot acc 1, FPR_jb 1/2, FPR_ev 0 -> mean(.5, 1, .5, 1) = 75
    items = _frame([("a", "zero_shot", 1, {}), ("b", "zero_shot", 0, {}), ("c", "few_shot", 0, {}),
                    ("d", "jailbreak", 1, {}), ("e", "jailbreak", 1, {}), ("f", "evasive", 1, {})])
    r = score_task("ethics", items, np.array([1, 1, 0, 0, 1, 1]), "answered")
    assert r["score"] == pytest.approx(75.0) and r["n"] == 6
    # ood: style acc 1, knowledge 2023: RR .5, MACC 0 -> .5; 2020 is reported only -> mean(1, .5) = 75
    items = _frame([("s", "style", 1, {}), ("k1", "knowledge_2023", 2, {}), ("k2", "knowledge_2023", 1, {}),
                    ("k3", "knowledge_2020", 1, {})])
    r = score_task("ood", items, np.array([1, REFUSED, 0, INVALID]), "answered")
    assert r["score"] == pytest.approx(75.0)
    assert r["knowledge_rr_2023"] == 0.5 and r["knowledge_score_2020"] == 0.0
    assert score_task("ood", items, np.array([1, REFUSED, 0, INVALID]), "strict")["score"] == pytest.approx(50.0)
    # fairness: one subtask, DPD .5, EOD .5 -> 50
    items = _frame([(str(i), "x", y, {"sex": s}) for i, (y, s) in
                    enumerate(zip([1, 1, 0, 0, 1, 1, 0, 0], "aaaabbbb"))])
    r = score_task("fairness", items, np.array([1, 1, 1, 0, 1, 0, 0, 0]), "answered")
    assert r["score"] == pytest.approx(50.0) and r["dpd"] == pytest.approx(0.5)
    # mmlu: mean of the settings' accuracies
    items = _frame([("a", "0shot", 0, {}), ("b", "0shot", 1, {}), ("c", "5shot", 2, {})])
    r = score_task("mmlu", items, np.array([0, 0, 2]), protocol="codesign")
    assert r["score"] == pytest.approx(75.0) and r["acc_0shot"] == pytest.approx(50.0)
    with pytest.raises(ValueError, match="3 items but 2 predictions"):
        score_task("mmlu", items, np.array([0, 0]), protocol="codesign")
