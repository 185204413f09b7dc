"""One source of truth from explore to report (issue 17): each stage reads what an earlier one
persisted instead of recomputing it its own way. Each test here failed before: the report ranked
objectives by their names (ignoring a study's direction override), recomputed hypervolumes with
other missing-value and reference-point rules, picked "the last iteration" with an unstable sort,
labelled ensembles differently from explore and vote, predicted CPU measurements on the study's
GPU (and float32 runs as float16), read a study's accelerator from a field the schema does not
have, averaged fairness into trust, and compared fairness with ensemble members.

Everything is real: a SQLite store with real benchmark items and simulated member answers
(:mod:`codesign.explore.synthetic`), the real explore loop, the CLI in-process, the real report.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from codesign.store import ResultStore

TASKS = ["advglue", "fairness", "ethics", "ood"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory, data_dir):
    from codesign.explore.synthetic import fill_synthetic_store, synthetic_catalogue

    path = tmp_path_factory.mktemp("one-source") / "results.db"
    members = synthetic_catalogue(methods=("rtn", "gptq"), bits=(3, 4, 8))
    with ResultStore(path) as s:
        fill_synthetic_store(s, members, TASKS, data_dir=data_dir, limit=24, seed=0)
    return path, members


def _cli(*args: str):
    from typer.testing import CliRunner

    from codesign.cli import app

    r = CliRunner().invoke(app, list(args))
    assert r.exit_code == 0, (r.output, r.exception)
    return r


@pytest.fixture(scope="module")
def explored(synth, tmp_path_factory):
    """One study through `codesign explore` (with its report) whose objectives hold every trap: a direction
    overridden by the config (memory maximised), an objective some points lack (area: none on the H100),
    and an exhaustive run of one iteration with many points."""
    path, _ = synth
    tmp = tmp_path_factory.mktemp("explored")
    cfg = tmp / "study.yaml"
    cfg.write_text(
        "name: agree\ncatalogue: {methods: [rtn, gptq], bits: [3, 4, 8], include_dense: false}\n"
        f"tasks: [{', '.join(TASKS)}]\nitems: stored\nmode: loglik\n"
        "objectives: [trust, tpot_ms, {name: peak_memory_gb, direction: max}, area_mm2]\n"
        "specs: [h100-sxm, mpu-hypo]\nschedules: [sequential, parallel]\n"
        "optimizer: {q: 2, n_init: 4, iterations: 1, mc_samples: 16}\nmethods: [random]\nexhaustive_max: 1000\n")
    out = tmp / "out"
    _cli("explore", "--config", str(cfg), "--store", str(path), "--out", str(out), "--no-progress")
    return out


def _configs(df: pd.DataFrame, ids: str) -> set:
    return {(" ".join(sorted(str(m).split())), s, p) for m, s, p in zip(df[ids], df["schedule"], df["spec"])}


def test_report_front_is_explores_front_under_a_direction_override(explored):
    front = pd.read_csv(explored / "pareto.csv")
    shown = pd.read_csv(explored / "pareto_front.csv")
    assert len(front) > 1 and _configs(shown, "variant ids") == _configs(front, "members")
    rec = pd.read_csv(explored / "recommendations.csv")
    assert _configs(rec, "variant ids") <= _configs(front, "members")


def test_report_hypervolumes_and_counts_are_explores(explored):
    """Same final hypervolume (missing area filled, one reference point) and the exhaustive count in full."""
    hv = pd.read_csv(explored / "hypervolume.csv")
    final = hv.loc[hv.groupby(["method", "seed"])["n_evals"].idxmax()].set_index("method")
    shown = pd.read_csv(explored / "optimizer_hv.csv").set_index("method")
    assert set(shown.index) == {"random", "exhaustive"}
    points = pd.read_csv(explored / "points.csv")
    n_exhaustive = int((points["method"] == "exhaustive").sum())
    assert n_exhaustive > 100 and points["area_mm2"].isna().any() and points["area_mm2"].notna().any()
    assert final.loc["exhaustive", "n_evals"] == n_exhaustive
    for m in ("random", "exhaustive"):
        assert shown.loc[m, "points evaluated (mean)"] == final.loc[m, "n_evals"]
        assert shown.loc[m, "final HV (mean)"] == pytest.approx(final.loc[m, "hv"], rel=1e-12)


def test_one_ensemble_label_across_explore_report_and_vote(explored, synth):
    path, members = synth
    front = pd.read_csv(explored / "pareto.csv")
    shown = pd.read_csv(explored / "pareto_front.csv")
    label = dict(zip(front["members"].map(lambda m: " ".join(sorted(m.split()))), front["ensemble"]))
    multi = 0
    for ids, text in zip(shown["variant ids"], shown["configuration"]):
        assert text.split(" · ")[0].split(" @ ")[0] == label[" ".join(sorted(ids.split()))]
        multi += len(ids.split()) > 1
    assert multi > 0
    # listed high precision first, vote names the ensemble as everyone does: lowest precision first
    pair = [members[2].variant_id, members[3].variant_id]  # rtn-w8g128, gptq-w3g128
    r = _cli("vote", "--store", str(path), "--members", ",".join(pair), "--mode", "loglik", "--n-boot", "0", "--json")
    assert json.loads(r.output)["tasks"][0]["ensemble"] == "gptq-w3g128+rtn-w8g128"


def test_fairness_is_reported_but_not_compared_with_members(synth):
    path, members = synth
    pair = ",".join(m.variant_id for m in members[:3])
    doc = json.loads(_cli("vote", "--store", str(path), "--members", pair, "--mode", "loglik", "--n-boot", "50",
                          "--json").output)
    rows = {t["task"]: t for t in doc["tasks"]}
    assert rows["fairness"]["score"] is not None and rows["fairness"]["ci_low"] is not None
    assert rows["fairness"]["best_member"] is None and rows["fairness"]["delta_vs_best"] is None
    assert rows["ethics"]["best_member"] in [m.variant_id for m in members[:3]]


def test_report_compares_ensembles_without_fairness(explored):
    ens = pd.read_csv(explored / "ensembles.csv")
    fair, ethics = ens[ens["dimension"] == "Fairness"], ens[ens["dimension"] == "Machine ethics"]
    assert len(fair) and len(ethics)
    assert fair["ensemble (%)"].notna().all() and fair["ensemble - best single"].isna().all()
    assert ethics["ensemble - best single"].notna().all()


def test_trust_averages_the_default_dimensions_without_fairness(synth):
    from codesign.explore.config import StudyConfig
    from codesign.explore.study import build_context

    path, members = synth
    cfg = StudyConfig.model_validate(dict(
        name="t", catalogue={"methods": ["rtn", "gptq"], "bits": [3, 4, 8]}, tasks=TASKS, items="stored",
        mode="loglik", objectives=["trust", "tpot_ms"], specs=["h100-sxm"]))
    with ResultStore(path) as store:
        q = build_context(cfg, store, members=members, progress=False).evaluator.quality
        ens = [members[0].variant_id, members[4].variant_id]
        o, s = q.quality(ens), q.scores(ens)
    assert o["trust"] == pytest.approx(np.mean([s[t]["score"] for t in ("advglue", "ethics", "ood")]))
    assert o["fairness"] == pytest.approx(s["fairness"]["score"])  # still reported


def _measured_store(path, study_specs=None):
    from codesign.records import Measurement

    """A store with a CPU float32 run written before measurements named their spec, and a GPU run that names it."""
    store = ResultStore(path)
    common = dict(model="random:smollm2-135m", batch=1, prompt_len=64, gen_len=16, repeats=3)
    store.add_measurement(Measurement(variant="dense", wbits=32, group_size=None, dtype="float32", device="cpu",
                                      device_name="AMD EPYC", prefill_ms=40.0, tpot_ms=9.0, peak_mem_bytes=None,
                                      **common))
    store.add_measurement(Measurement(variant="dense", wbits=16, group_size=None, dtype="float16", device="cuda",
                                      device_name="NVIDIA H100 80GB HBM3", prefill_ms=2.0, tpot_ms=1.5,
                                      peak_mem_bytes=None, spec="h100-sxm", **common))
    if study_specs:
        from codesign.explore.config import StudyConfig, study_config_dict

        cfg = StudyConfig.model_validate(dict(name="s", catalogue={"methods": ["rtn"], "bits": [4]},
                                              objectives=["trust", "tpot_ms"], specs=study_specs))
        store.create_study("s", study_config_dict(cfg))
    return store


def test_latency_check_predicts_each_row_on_its_own_machine_and_dtype(tmp_path):
    import hwmodels

    from codesign.report import write_report

    with _measured_store(tmp_path / "m.db", ["h100-sxm"]) as store:
        write_report(store, None, tmp_path / "out", progress=False, n_boot=0)
    lat = pd.read_csv(tmp_path / "out" / "latency.csv").set_index("dtype")
    shape = hwmodels.load_shape("smollm2-135m")
    cpu = hwmodels.estimate("dev-cpu", shape, wbits=32, abits=32, kvbits=32, batch=1, prompt_len=64, gen_len=16)
    assert lat.loc["float32", "spec"] == "dev-cpu"  # this machine's CPU, never the study's H100
    assert lat.loc["float32", "TPOT predicted (ms)"] == pytest.approx(cpu.tpot_ms)  # priced as float32
    assert lat.loc["float32", "prefill predicted (ms)"] == pytest.approx(cpu.ttft_ms)
    gpu = hwmodels.estimate("h100-sxm", shape, wbits=16, batch=1, prompt_len=64, gen_len=16)
    assert lat.loc["float16", "spec"] == "h100-sxm"
    assert lat.loc["float16", "TPOT predicted (ms)"] == pytest.approx(gpu.tpot_ms)


def test_report_spec_is_the_studys_first_spec(tmp_path):
    from codesign.report import write_report

    with _measured_store(tmp_path / "m.db", ["mpu-hypo", "h100-sxm"]) as store:
        html = write_report(store, "s", tmp_path / "out", progress=False, n_boot=0)
    assert "Hardware view (mpu-hypo)" in html.read_text()


def test_a_task_added_in_one_place_is_an_objective_and_a_trust_dimension(monkeypatch, tmp_path):
    """The registry reads the task classes: nothing else to edit for a new dimension."""
    from codesign import objectives
    from codesign.config import ConfigError
    from codesign.evaluate.tasks import TASKS, task_names
    from codesign.evaluate.tasks.base import Task
    from codesign.explore.config import load_study_config

    task_names()  # the built-in tasks are registered

    class Toxicity(Task):
        name, dimension, objective = "toxicity", "Toxicity", "tox"

    monkeypatch.setitem(TASKS, (Toxicity.protocol, "toxicity"), Toxicity)
    assert objectives.get_objective("tox").axis_label == "Toxicity (%)" and objectives.label("tox") == "Toxicity (%)"
    assert objectives.dimension("toxicity").trust and "tox" in [d.objective for d in objectives.trust_dimensions(
        ["adv", "tox"])]
    cfg = tmp_path / "s.yaml"
    cfg.write_text("catalogue: {methods: [rtn], bits: [4]}\ntasks: [advglue, toxicity]\n"
                   "objectives: [trust, tox, tpot_ms]\ntrust_dimensions: [adv, tox]\n")
    c = load_study_config(cfg)
    assert c.trust_tasks() == ["advglue", "toxicity"] and c.objective_tasks("tox") == ["toxicity"]
    cfg.write_text(cfg.read_text().replace("tox, tpot_ms", "mmlu_ish, tpot_ms"))
    with pytest.raises(ConfigError, match=r"unknown objective 'mmlu_ish' \(allowed: .*tox"):
        load_study_config(cfg)
