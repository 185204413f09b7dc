"""codesign data: DecodingTrust's prompt files read out of (fake) DT source with ast, the Hub
converters against the local copies, pinned files, the hub data directory and its offline error.
No network: Hub rows are built from the shared copies, DT's repository is a fixture or a folder."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from codesign.config import ConfigError

FIXTURE = Path(__file__).parent / "fixtures" / "dt_source"


@pytest.fixture()
def dt_tree(tmp_path):
    """The fake DT source plus the YAML configs the recipe reads (one made-up line each)."""
    from codesign.data.dt_prompts import RECIPE

    root = tmp_path / "dt"
    shutil.copytree(FIXTURE, root)
    for f in sorted({leaf.file for leaf in RECIPE if leaf.file.endswith(".yaml")}):
        p = root / f
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"data_name: fake_{p.stem}\nfake_num: 3 # comment\n\n")
    return root


def _build(root):
    from codesign.data.dt_prompts import build_prompt_files
    from codesign.data.repo import RepoFiles

    return build_prompt_files(RepoFiles(root))


# -- DecodingTrust prompt extractor ---------------------------------------------------------------------
def test_prompt_files_take_the_literals_the_code_uses(dt_tree):
    docs = _build(dt_tree)
    assert sorted(docs) == ["advglue", "chat_protocol", "fairness", "machine_ethics", "ood"]
    me = docs["machine_ethics"]
    assert me["task_message"]["text"] == "Fake: answer 'fake bad' or 'fake ok'."  # implicit concatenation
    assert me["options"]["value"] == ["fake ok", "fake bad"]
    assert me["test_input"]["suffix"] == "\nFAKE test suffix: "  # first assignment, not the later one
    assert me["few_shot_demonstrations"]["suffix"] == "\nfake demo suffix: "
    assert me["jailbreak_prompts"]["prompts"] == {"1": "Fake jailbreak one.", "2": "Fake jailbreak two."}
    assert me["data_name"]["value"] == "fake_ethics_commonsense_short"
    assert me["settings"]["config_file"]["yaml"] == ["data_name: fake_ethics_commonsense_short",
                                                     "fake_num: 3 # comment"]  # whole lines, trailing blank dropped
    adv = docs["advglue"]["tasks"]
    assert adv["sst2"]["demonstrations"]["messages"][0] == {
        "role": "user", "content": "Fake sst2 prompt, say 'good' or 'bad'.\nsentence: fake happy"}  # f-string
    assert adv["mnli-mm"]["task_description"] == "Fake mnli prompt." and "demonstrations" not in adv["mnli-mm"]
    assert adv["sst2"]["input_keys"] == ["sentence", None] and adv["sst2"]["answer_mapping"] == {"bad": 0, "good": 1}
    ood = docs["ood"]
    assert ood["knowledge"]["task_message_idk"]["text"] == "Fake knowledge message, or '4' if unsure."
    assert ood["knowledge"]["task_message_standard"]["text"] == "Fake knowledge message."
    assert ood["style"]["task_message"]["text"] == "Fake style message."
    assert ood["knowledge"]["test_input"]["options_idk"] == ["0", "1", "2"]
    assert ood["task_lists"]["OOD_DEMO"] == {"knowledge": {"qa_fake": ["demo_a"]}, "style": {"fake_style": ["base"]}}
    fair = docs["fairness"]
    assert fair["options"]["value"] == ["fake yes", "fake no"]  # JSON inside a string literal
    assert fair["generation"]["max_tokens"] == 13  # dataclass default
    assert len(fair["settings"]["configs"]) == 12
    chat = docs["chat_protocol"]
    dc = chat["do_classification"]
    assert dc["zero_shot"]["system"] == "Fake zero-shot system." and dc["zero_shot"]["joiner"] == "<J>"
    assert dc["few_shot_example_prefix_false"]["system"] == "Fake few-shot system."
    assert dc["few_shot_example_prefix_false"]["assistant_acknowledgement"] == "Fake sure!"
    assert dc["few_shot_example_prefix_true"]["system_prefix"] == "Fake prefix system. "
    assert dc["generation"]["max_tokens_default"] == 11
    tpl = chat["hf_chat_rendering"]["templates"]
    assert tpl["vicuna_v1.1"]["system"] == "Fake vicuna system. Second part."
    assert tpl["llama-2"]["sep_style"] == "LLAMA2" and tpl["llama-2"]["stop_token_ids"] == [2]
    assert tpl["llama-2"]["stop_str"] == "FAKE-STOP" and tpl["vicuna_v1.1"]["stop_token_ids"] is None  # defaults
    parse = chat["answer_parsing"]
    assert parse["ood_style"]["keywords"] == ["positive", "fake neg"]
    assert parse["ood_knowledge"]["refusal_keywords"] == ["sorry", "fake cannot"]
    assert parse["fairness_adult"]["yes_keywords"] == ["fyes", "Yes"]
    assert parse["fairness_adult"]["no_keywords"] == ["fno", "No"]
    assert chat["generation_settings"]["advglue"]["max_tokens"] == 7


def test_sources_name_file_and_lines(dt_tree):
    docs = _build(dt_tree)
    def line(path, text):
        rows = (FIXTURE / path).read_text().splitlines()
        return next(i for i, ln in enumerate(rows, 1) if ln.strip().startswith(text))

    me = "src/dt/perspectives/machine_ethics/test_machine_ethics.py"
    first = line(me, "PROMPT_DIC")
    assert docs["machine_ethics"]["jailbreak_prompts"]["source"] == \
        f"decoding-comp-trust/DecodingTrust@0cf3fc1:{me}:{first}-{first + 3}"
    adv = "src/dt/perspectives/advglue/gpt_eval.py"
    sst2 = docs["advglue"]["tasks"]["sst2"]  # the description's lines; the other constants in source_also
    a, b = line(adv, '"sst2": "Fake'), line(adv, '"or')
    assert sst2["source"].endswith(f"{adv}:{a}-{b}")
    assert len(sst2["source_also"]) == 3
    assert docs["ood"]["task_lists"]["source"].endswith("evaluation_ood.py:1-4")  # adjacent constants merge
    assert docs["machine_ethics"]["source_commit"].endswith("@0cf3fc1e77c2c38bae358c57ff2efad76b396c7e")


def test_a_renamed_constant_or_missing_file_fails_loudly(dt_tree):
    p = dt_tree / "src/dt/perspectives/machine_ethics/test_machine_ethics.py"
    p.write_text(p.read_text().replace("PROMPT_DIC = {", "PROMPTS = {", 1))
    with pytest.raises(ConfigError, match="no module-level assignment to 'PROMPT_DIC'"):
        _build(dt_tree)
    p.unlink()
    with pytest.raises(ConfigError, match="test_machine_ethics.py not found"):
        _build(dt_tree)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_git_source_is_read_at_the_pinned_commit(dt_tree, tmp_path):
    from codesign.data.repo import RepoFiles

    git = lambda *a: subprocess.run(["git", "-C", str(dt_tree), *a], check=True, capture_output=True,  # noqa: E731
                                    text=True).stdout.strip()
    git("init", "-q")
    git("-c", "user.email=t@t", "-c", "user.name=t", "add", ".")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "fixture")
    sha = git("rev-parse", "HEAD")
    (dt_tree / "src/dt/perspectives/machine_ethics/calculate_score.py").write_text("IMMORAL_WORDS = ['changed']\n")
    files = RepoFiles(dt_tree, commit=sha)
    assert "'fake bad'" in files.read_text("src/dt/perspectives/machine_ethics/calculate_score.py")
    with pytest.raises(ConfigError, match="does not hold commit 0cf3fc1"):
        RepoFiles(dt_tree)  # the pinned DT commit is not in this repository


def test_cli_dt_prompts_writes_compares_and_refuses_overwrite(dt_tree, tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "codesign", "data", "dt-prompts", *a],  # noqa: E731
                                    capture_output=True, text=True, timeout=300)
    out = tmp_path / "prompts"
    r = run("--out", str(out), "--source", str(dt_tree))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["advglue.json", "chat_protocol.json", "fairness.json",
                                                     "machine_ethics.json", "ood.json"]
    r = run("--out", str(out), "--source", str(dt_tree))
    assert r.returncode == 2 and r.stderr.startswith("error: --out:") and "--force" in r.stderr
    r = run("--out", str(tmp_path / "again"), "--source", str(dt_tree), "--compare", str(out))
    assert r.returncode == 0 and "advglue.json" in r.stdout, r.stderr
    assert "differs:" not in r.stdout and "absent:" not in r.stdout  # every value as in the folder compared
    r = run("--out", str(tmp_path / "x"), "--source", str(tmp_path / "nope"))
    assert r.returncode == 2 and "--source:" in r.stderr and not (tmp_path / "x").exists()


# -- Hub converters: rows as the Hub serves them -> the files the loaders read ------------------------------
def test_mmlu_rows_convert_to_the_shared_csv_bytes(data_dir, tmp_path):
    from codesign.data.hub import write_mmlu

    subjects = ["abstract_algebra", "college_physics", "world_religions"]
    rows = []
    for s in subjects:  # cais/mmlu's schema: question, subject, choices [4], answer (class index)
        with (data_dir / "mmlu" / "test" / f"{s}_test.csv").open(newline="") as f:
            rows += [{"question": r["question"], "subject": s, "choices": [r[f"choice{i}"] for i in range(4)],
                      "answer": int(r["answer"])} for r in csv.DictReader(f)]
    written = write_mmlu(rows, "test", tmp_path)
    assert [p.name for p in written] == [f"{s}_test.csv" for s in subjects]
    for p in written:
        assert p.read_bytes() == (data_dir / "mmlu" / "test" / p.name).read_bytes()
    with pytest.raises(ConfigError, match="allowed: 4 choices"):
        write_mmlu([{**rows[0], "choices": ["a", "b"]}], "test", tmp_path)


def test_advglue_rows_convert_to_the_shared_dev_json(data_dir, tmp_path):
    from codesign.data.hub import write_advglue

    shared = json.loads((data_dir / "advglue" / "dev.json").read_text())
    rows = {t: [{**r, "extra_hub_column": 1} for r in recs] for t, recs in shared.items()}
    out = write_advglue(rows, tmp_path)
    built = json.loads(out.read_text())
    assert built == shared and all(list(b) == list(s) for b, s in zip(built["qqp"], shared["qqp"]))  # key order too


def test_pinned_files_are_checked(data_dir, tmp_path):
    from codesign.data.hub import copy_pinned

    written = copy_pinned("ethics", tmp_path, lambda f: (data_dir / f["path"]).read_bytes())
    assert {p.name for p in written} == {"cm_test.csv", "cm_test_hard.csv", "cm_ambig.csv"}
    with pytest.raises(ConfigError, match="differs from the pinned"):
        copy_pinned("adult", tmp_path, lambda f: b"not the UCI file")


def _dt_layout(data_dir, root):
    """A folder laid out like DT's repository, holding the shared copies (symlinks)."""
    from codesign.data.hub import pinned

    for name in ("ethics", "decodingtrust"):
        for f in pinned(name):
            p = root / f["repo_path"]
            p.parent.mkdir(parents=True, exist_ok=True)
            p.symlink_to(data_dir / f["path"])
    return root


def test_materialise_from_a_local_dt_copy_and_hub_data_dir(data_dir, tmp_path, monkeypatch):
    from codesign.data import hub
    from codesign.paths import data_dir as resolve

    src = _dt_layout(data_dir, tmp_path / "dt")
    root = hub.materialise(["ethics", "decodingtrust"], tmp_path / "cache", dt_source=src, progress=False)
    for rel in ("ethics/commonsense/cm_ambig.csv", "decodingtrust/fairness/adult_0_200_test_base_rate_0.5.jsonl",
                "decodingtrust/fairness/sensitive_attr_adult_32_200_train_base_rate_0.0.npy",
                "decodingtrust/ood/knowledge.json"):
        assert (root / rel).read_bytes() == (data_dir / rel).read_bytes(), rel
    assert hub.is_complete(root, "ethics") and not list(root.glob(".tmp-*"))
    # --data-dir hub reads the cache; sources already there are not fetched again (no network here)
    monkeypatch.setenv("CODESIGN_CACHE", str(tmp_path / "c2"))
    for name in hub.SOURCES:
        marker = tmp_path / "c2" / "data" / hub.MARKERS / f"{name}.json"
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("{}")
    assert resolve("hub") == tmp_path / "c2" / "data"
    assert {r["source"] for r in hub.status(data_dir, tmp_path / "c2" / "data") if r["local"] and r["hub_cache"]} \
        == set(hub.SOURCES)


def test_offline_hub_data_dir_is_one_clear_error(tmp_path):
    env = dict(os.environ, CODESIGN_DATA="hub", HF_HUB_OFFLINE="1", CODESIGN_CACHE=str(tmp_path / "cache"))
    r = subprocess.run([sys.executable, "-m", "codesign", "eval", "--model", "tiny-llama", "--tasks", "mmlu",
                        "--store", str(tmp_path / "r.db"), "--limit", "2"], capture_output=True, text=True, env=env,
                       timeout=300)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith("error: data source mmlu") and "--data-dir or CODESIGN_DATA" in lines[0]
    assert not (tmp_path / "cache" / "data" / "mmlu").exists()
    with pytest.raises(ConfigError, match="unknown data source"):
        from codesign.data.hub import materialise

        materialise(["mmlu", "glue"], tmp_path)
