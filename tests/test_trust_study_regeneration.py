"""experiments/trust_study/run.py on a tiny real store: the full run, then its outputs regenerated from
the store alone (``--tables-only``, no model), identical, with counts consistent by construction."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

RUN = Path(__file__).resolve().parents[1] / "experiments" / "trust_study" / "run.py"

CONFIG = """name: tiny-trust
model: tiny-llama
shape: smollm2-135m
catalogue: {methods: [rtn], bits: [2, 4, 8], group_sizes: [32], include_dense: true, n_samples: 4, seq_len: 32}
tasks: [advglue, fairness, ethics]
limit: 3
objectives: [trust, tpot_ms]
specs: [h100-sxm, mpu-hypo]
schedules: [sequential, parallel]
optimizer: {q: 2, n_init: 2, iterations: 1, mc_samples: 16}
methods: [bo, random]
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory, data_dir):
    sys.path.insert(0, str(RUN.parent))
    import run

    tmp = tmp_path_factory.mktemp("trust-study")
    cfg = tmp / "config.yaml"
    cfg.write_text(CONFIG + f"data_dir: {data_dir}\n")
    out, store = tmp / "out", tmp / "study.db"
    run.main(["--config", str(cfg), "--store", str(store), "--out", str(out), "--n-boot", "20",
              "--generate-limit", "2"])
    return cfg, store, out


def test_full_run_writes_every_output_with_consistent_counts(study):
    _, _, out = study
    for name in ("variants.csv", "ensembles.csv", "recommendations.csv", "refusals_generate.csv", "findings.json",
                 "summary.json", "explore/points.csv", "explore/pareto.csv", "report/report.html",
                 "report/optimizer_hv.csv", "FINDINGS.md"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    points = pd.read_csv(out / "explore" / "points.csv")
    assert summary["points_per_method"] == points.groupby("method").size().to_dict()
    assert summary["trust_dimensions"] == ["advglue", "ethics"]  # the default ones among the study's tasks
    shown = pd.read_csv(out / "report" / "optimizer_hv.csv").set_index("method")
    for h in summary["hypervolume"]:
        assert h["n_evals"] == summary["points_per_method"][h["method"]]
        assert shown.loc[h["method"], "points evaluated (mean)"] == h["n_evals"]
        assert shown.loc[h["method"], "final HV (mean)"] == pytest.approx(h["hv"], rel=1e-12)
    assert "exhaustive" in summary["points_per_method"]
    ens = pd.read_csv(out / "ensembles.csv")
    assert set(ens["ensemble"]) == {"rtn-w2g32+rtn-w4g32+rtn-w8g32"}  # the one ensemble label
    fair = ens[ens["task"] == "fairness"]
    assert fair["score"].notna().all() and fair["best_member"].isna().all() and fair["dense_score"].isna().all()
    findings = json.loads((out / "findings.json").read_text())
    assert findings["ensembles"]["comparisons"] == 2  # advglue and ethics; fairness is not compared
    rec = pd.read_csv(out / "recommendations.csv")
    assert set(rec["spec"]) == {"h100-sxm", "mpu-hypo"}


def test_tables_only_regenerates_the_same_outputs_without_a_model(study, tmp_path):
    from codesign.store import ResultStore

    cfg, store, out = study
    with ResultStore(store) as s:
        before = {t: len(s.frame(t)) for t in ("outputs", "eval_runs", "study_points", "variants")}
    again = tmp_path / "again"
    r = subprocess.run([sys.executable, str(RUN), "--config", str(cfg), "--store", str(store), "--out", str(again),
                        "--n-boot", "20", "--tables-only"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    with ResultStore(store) as s:
        assert {t: len(s.frame(t)) for t in before} == before  # nothing evaluated, nothing added
    for name in ("variants.csv", "ensembles.csv", "recommendations.csv", "refusals_generate.csv", "findings.json",
                 "summary.json", "explore/points.csv", "explore/pareto.csv", "explore/hypervolume.csv",
                 "report/optimizer_hv.csv", "report/pareto_front.csv", "report/variant_scores.csv", "FINDINGS.md"):
        assert (again / name).read_text() == (out / name).read_text(), name


def test_tables_only_without_a_study_result_is_a_clear_error(study, tmp_path):
    from codesign.store import ResultStore

    cfg, _, _ = study
    with ResultStore(tmp_path / "empty.db"):
        pass
    r = subprocess.run([sys.executable, str(RUN), "--config", str(cfg), "--store", str(tmp_path / "empty.db"),
                        "--out", str(tmp_path / "o"), "--tables-only"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "error:" in r.stderr and "no stored result" in r.stderr


def test_findings_md_quotes_the_files_it_is_rendered_from(study):
    _, _, out = study
    text = (out / "FINDINGS.md").read_text()
    findings = json.loads((out / "findings.json").read_text())
    e = findings["ensembles"]
    assert f"{e['comparisons']} ensemble x dimension comparisons" in text
    assert f"{e['within']} within their interval, {e['below_best']} significantly below" in text
    assert f"dense: {findings['trust']['dense']:.1f}" in text
    rtn8 = findings["agreement_with_dense"]["rtn-w8g32"]
    assert f"| RTN | " in text and f"{100 * rtn8:.1f}%" in text
    summary = json.loads((out / "summary.json").read_text())
    bo = next(h for h in summary["hypervolume"] if h["method"] == "bo")
    assert f"bo: {100 * bo['hv_fraction']:.1f}% of the exhaustive hypervolume with {bo['n_evals']} evaluations" in text


def test_report_counts_that_disagree_with_the_stored_result_are_an_error(study, tmp_path):
    import run
    from codesign.config import ConfigError

    _, _, out = study
    summary = json.loads((out / "summary.json").read_text())
    run.check_counts(out / "report" / "optimizer_hv.csv", summary)  # consistent: no error
    shown = pd.read_csv(out / "report" / "optimizer_hv.csv")
    shown.loc[shown["method"] == "exhaustive", "points evaluated (mean)"] -= 1  # the pre-issue-17 kind of bug
    bad = tmp_path / "optimizer_hv.csv"
    shown.to_csv(bad, index=False)
    with pytest.raises(ConfigError, match="evaluation counts"):
        run.check_counts(bad, summary)
