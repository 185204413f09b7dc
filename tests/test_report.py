"""Reports rendered from a small synthetic-but-realistic store: real SQLite, real task items from the
benchmark loaders, synthetic member answers / study points / measurements; the HTML is parsed."""

from __future__ import annotations

import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from codesign.config import ConfigError
from codesign.records import INVALID, REFUSED, Measurement, VariantSpec
from codesign.store import ItemRow, OutputRow, ResultStore

MODEL = "smollm2-135m-instruct"
N_ITEMS = 40


def _variants() -> list[VariantSpec]:
    out = [VariantSpec(MODEL)]
    out += [VariantSpec(MODEL, "rtn", b, 128) for b in (2, 3, 4, 8)]
    out += [VariantSpec(MODEL, "gptq", b, 128, calib="c4") for b in (3, 4, 8)]
    return out


def _accuracy(spec: VariantSpec) -> float:
    """Synthetic but plausible: accuracy falls with precision, GPTQ loses less than RTN."""
    if spec.is_dense:
        return 0.72
    loss = {2: 0.35, 3: 0.14, 4: 0.05, 8: 0.005}[spec.bits]
    return 0.72 - loss * (0.6 if spec.method == "gptq" else 1.0)


def build_store(path: Path, *, study: bool = True, measurements: bool = True, data_dir=None,
                n_items: int = N_ITEMS) -> ResultStore:
    """A store as the pipeline would leave it (items from the real task loaders)."""
    from codesign.evaluate.tasks import get_task, task_names

    store = ResultStore(path)
    rng = np.random.default_rng(0)
    specs = _variants()
    for s in specs:
        store.add_variant(s)
    for name in task_names():
        task = get_task(name)
        items = task.load(data_dir, limit=n_items, seed=0)
        store.add_items(ItemRow(name, it.item_id, it.subtask, it.label, it.meta) for it in items)
        for s in specs:
            acc = _accuracy(s)
            refuse = 0.03 + (0.12 if s.bits <= 3 else 0.0)
            rows = []
            for it in items:
                u = rng.random()
                if u < acc:
                    lab = it.label
                elif u < acc + refuse:
                    lab = REFUSED
                elif u < acc + refuse + 0.02:
                    lab = INVALID
                else:
                    lab = int((it.label + 1 + rng.integers(len(it.options) - 1)) % len(it.options))
                rows.append(OutputRow(s.variant_id, name, it.item_id, lab, raw_text=str(lab), mode="generate",
                                      latency_s=0.01))
            store.add_outputs(rows)
    if study:
        _add_study(store, specs, rng)
    if measurements:
        # plausible timings of a 7B model on an H100 (eager PyTorch: launch overhead on top of the roofline)
        for bits, prefill, tpot in ((16, 13.8, 6.9), (8, 14.6, 4.3), (4, 15.1, 3.2)):
            store.add_measurement(Measurement(
                model="random:llama-2-7b", variant="dense" if bits == 16 else f"rtn-w{bits}", wbits=bits,
                group_size=None if bits == 16 else 128, dtype="float16", device="cuda",
                device_name="NVIDIA H100 80GB HBM3", batch=1, prompt_len=512, gen_len=64, prefill_ms=prefill,
                tpot_ms=tpot, peak_mem_bytes=int(14e9 * bits / 16), repeats=3, spec="h100-sxm",
                kernel="torch-matmul" if bits == 16 else "marlin-gptqmodel"))
    return store


STUDY_CONFIG = {
    "name": "demo", "model": MODEL, "catalogue": {"methods": ["rtn", "gptq"], "bits": [2, 3, 4, 8]}, "mode": "generate",
    "objectives": [{"name": "trust", "direction": "max"}, {"name": "tpot_ms", "direction": "min"},
                   {"name": "peak_memory_gb", "direction": "min"}],
    "constraints": {"fits": True, "max_tpot_ms": 0.3},
    "specs": ["h100-sxm"], "schedules": ["sequential", "parallel", "batched"],
    "methods": ["bo", "random", "nsga2"],
}


def _add_study(store: ResultStore, specs: list[VariantSpec], rng) -> None:
    """Synthetic points (better optimizers find better ensembles), summarised by explore's own code."""
    from codesign.explore.config import StudyConfig, study_config_dict
    from codesign.explore.results import summarize
    from codesign.records import Configuration, StudyPoint

    cfg = StudyConfig.model_validate(STUDY_CONFIG)
    store.create_study("demo", study_config_dict(cfg))
    quant = [s for s in specs if not s.is_dense]
    for method, quality in (("bo", 1.0), ("random", 0.0), ("nsga2", 0.5)):
        for seed in (0, 1):
            r = np.random.default_rng(100 * seed + len(method))
            pid = 0
            for it in range(8):
                for _ in range(3):
                    k = int(r.integers(1, 4))
                    # better optimizers pick high-precision members more often as iterations go on
                    w = np.array([s.bits for s in quant], float) ** (quality * it / 4)
                    members = list(r.choice(len(quant), size=k, replace=False, p=w / w.sum()))
                    ms = [quant[i] for i in members]
                    sched = str(r.choice(["sequential", "parallel", "batched"])) if k > 1 else "sequential"
                    trust = 100 * (np.mean([_accuracy(s) for s in ms]) + 0.02 * (k - 1)) + r.normal(0, 0.5)
                    wbytes = sum(s.bits for s in ms) / 8 * 0.135
                    tpot = {"sequential": 1.0, "parallel": 0.55, "batched": 0.7}[sched] * (0.2 + 0.9 * wbytes)
                    mem = wbytes * (1.0 if sched != "parallel" else 1.15) + 0.05
                    feasible = bool(mem < 0.8) and tpot <= STUDY_CONFIG["constraints"]["max_tpot_ms"]
                    store.add_study_point(StudyPoint(
                        "demo", method, seed, pid, it,
                        Configuration(tuple(s.variant_id for s in ms), sched, "h100-sxm"),
                        {"trust": trust, "tpot_ms": tpot, "peak_memory_gb": mem}, feasible))
                    pid += 1
    store.save_study_result(summarize("demo", store.study_points("demo"),
                                      [(o.name, o.direction) for o in cfg.objectives]))


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "results.db"
    with build_store(path) as s:
        yield s


@pytest.fixture(scope="module")
def report(demo_store, tmp_path_factory):
    from codesign.report import write_report

    out = tmp_path_factory.mktemp("out")
    html = write_report(demo_store, "demo", out, progress=False, n_boot=100)
    return out, html


class _Links(HTMLParser):
    """Collects every attribute that makes a browser fetch something, and element/section ids."""

    def __init__(self):
        super().__init__()
        self.fetching: list[tuple[str, str, str]] = []
        self.ids: set[str] = set()
        self.tags: set[str] = set()
        self.images = 0

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag == "img":
            self.images += 1
        for k, v in attrs:
            if k == "id":
                self.ids.add(v)
            if k in ("src", "href", "xlink:href", "srcset", "data", "poster", "action") and v is not None:
                self.fetching.append((tag, k, v))
            if k == "style" and v and "url(" in v:
                self.fetching.append((tag, k, v))


def _is_external(value: str) -> bool:
    v = value.strip().lower()
    return v.startswith(("http:", "https:", "//", "ftp:")) or "url(http" in v or "url(//" in v


def test_report_writes_every_figure_and_table(report, demo_store):
    import pandas as pd

    from codesign.pareto import pareto_mask

    out, html = report
    assert html == out / "report.html" and html.exists()
    figs = ["pareto_trust_vs_tpot_ms", "pareto_trust_vs_peak_memory_gb", "pareto_projections", "dimension_scores",
            "ensemble_vs_single", "optimizer_trace", "roofline", "latency_check"]
    for name in figs:
        png, svg = out / f"{name}.png", out / f"{name}.svg"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert png.stat().st_size > 10_000, name  # a real drawing, not an empty canvas
        assert svg.read_text().lstrip().startswith(("<?xml", "<svg")), name
    for name in ["recommendations", "pareto_front", "variant_scores", "ensembles", "optimizer_hv", "latency",
                 "roofline_ops"]:
        assert (out / f"{name}.csv").stat().st_size > 0, name
        md = (out / f"{name}.md").read_text()
        assert md.startswith("# ") and "| ---" in md, name
    # the tables hold the stored study's numbers, not just something: the front is the stored front
    # and mutually non-dominated; the optimizer trace is the stored hypervolume trace
    res = demo_store.study_result("demo")
    front = pd.read_csv(out / "pareto_front.csv")
    assert len(front) == len(res.front)
    Y = front[["trust", "tpot_ms", "peak_memory_gb"]].to_numpy() * np.array([1.0, -1.0, -1.0])
    assert pareto_mask(Y).all()
    hv = pd.read_csv(out / "optimizer_hv.csv").set_index("method")
    final = {}
    for h in res.hypervolume:  # the last step of each (method, seed) trace
        final[(h.method, h.seed)] = h.hv
    assert set(hv.index) == {m for m, _ in final}
    for m in hv.index:
        seeds = [v for (mm, _), v in final.items() if mm == m]
        assert hv.loc[m, "seeds"] == len(seeds)
        assert hv.loc[m, "final HV (min)"] == pytest.approx(min(seeds))
        assert hv.loc[m, "final HV (max)"] == pytest.approx(max(seeds))


def test_html_is_self_contained_and_has_every_section(report):
    out, html = report
    text = html.read_text()
    p = _Links()
    p.feed(text)
    external = [f for f in p.fetching if _is_external(f[2])]
    assert external == [], external
    # figures are embedded: PNGs as data URIs, Pareto fronts as inline SVG
    assert p.images >= 4 and "svg" in p.tags
    assert all(v.startswith("data:image/png;base64,") for t, k, v in p.fetching if t == "img")
    # links to the files beside the report are relative and exist
    for tag, k, v in p.fetching:
        if tag == "a" and not v.startswith("#"):
            assert (out / v).exists(), v
    assert not {"script", "link", "iframe"} & p.tags
    for sec in ("summary", "pareto", "variants", "ensembles", "hardware", "optimizer", "files"):
        assert f"sec-{sec}" in p.ids, sec
    # every point of the Pareto plots carries its ensemble + schedule as hover text
    assert text.count("<title>") >= 20 and "· parallel" in text


def test_variant_scores_match_task_scoring(report, demo_store):
    """The table's numbers are the task's own score of the stored answers (not re-derived)."""
    import pandas as pd

    from codesign.evaluate.tasks import get_task

    out, _ = report
    df = pd.read_csv(out / "variant_scores.csv")
    spec = VariantSpec(MODEL, "rtn", 4, 128)
    items = demo_store.items("ethics")
    _, labels = demo_store.label_matrix("ethics", [spec.variant_id])
    want = get_task("ethics").score(items, labels[0], policy="decodingtrust")
    row = df[df["variant_id"] == spec.variant_id].iloc[0]
    assert row["ethics score (%)"] == pytest.approx(want["score"])
    assert row["ethics refusal (%)"] == pytest.approx(100 * want["refusal_rate"])
    # the study's trust dimensions (the default: fairness is reported, not averaged)
    trust = np.mean([row[f"{t} score (%)"] for t in ("advglue", "ethics", "ood")])
    assert row["trust (%)"] == pytest.approx(trust)
    # the dense model leads the table; the 2-bit RTN variant is the least accurate on MMLU
    assert df.iloc[0]["method"] == "dense"
    assert df.loc[df["mmlu score (%)"].idxmin(), "bits"] == 2


def test_recommendations_respect_study_constraints(report):
    import pandas as pd

    out, html = report
    rec = pd.read_csv(out / "recommendations.csv")
    assert len(rec) >= 1
    assert (rec["tpot_ms"] <= STUDY_CONFIG["constraints"]["max_tpot_ms"]).all()
    assert (rec["peak_memory_gb"] < 0.8).all()  # infeasible points (do not fit) are never recommended
    front = pd.read_csv(out / "pareto_front.csv")
    assert rec["trust"].max() <= front["trust"].max() + 1e-9
    text = html.read_text()
    assert "tpot_ms &lt;= 0.3" in text and "Highest trust score" in text


def test_pareto_mask_and_hypervolume_against_botorch():
    import torch
    from botorch.utils.multi_objective.hypervolume import Hypervolume
    from botorch.utils.multi_objective.pareto import is_non_dominated

    from codesign.pareto import hypervolume, pareto_mask

    rng = np.random.default_rng(3)
    for m in (2, 3):
        Y = rng.normal(size=(60, m))
        Y[5] = Y[4]  # duplicates stay on the front together
        mask = pareto_mask(Y)
        assert (mask == is_non_dominated(torch.tensor(Y), deduplicate=False).numpy()).all()
        ref = Y.min(0) - 0.1
        want = Hypervolume(torch.tensor(ref)).compute(torch.tensor(Y[mask]))
        assert hypervolume(Y, ref) == pytest.approx(want, rel=1e-9)


def test_stored_hv_trace_is_monotone_per_seed(demo_store):
    res = demo_store.study_result("demo")
    steps = {}
    for h in res.hypervolume:
        steps.setdefault((h.method, h.seed), []).append(h)
    for trace in steps.values():
        assert [h.n_evals for h in trace] == list(range(1, len(trace) + 1))
        assert (np.diff([h.hv for h in trace]) >= -1e-12).all()
    assert {m for m, _ in steps} == {"bo", "random", "nsga2"} and all(h.hv >= 0 for h in res.hypervolume)


def test_constraint_bounds():
    from codesign.explore.config import Constraints

    cs = Constraints(fits=True, max_tpot_ms=20, min_trust=55, max_area_mm2=300, max_energy_per_token_j=0.5)
    assert sorted(f"{o} {op} {b:g}" for o, op, b in cs.bounds()) == \
        ["area_mm2 <= 300", "energy_per_token_j <= 0.5", "tpot_ms <= 20", "trust >= 55"]


def test_report_degrades_without_study_or_measurements(tmp_path):
    from codesign.report import write_report

    with build_store(tmp_path / "r.db", study=False, measurements=False, n_items=16) as s:
        html = write_report(s, None, tmp_path / "out", progress=False, n_boot=0)
    text = html.read_text()
    assert "No explore study in this store" in text
    assert (tmp_path / "out" / "dimension_scores.png").exists()
    assert (tmp_path / "out" / "ensemble_vs_single.png").exists()  # default ensemble across precisions
    assert not (tmp_path / "out" / "optimizer_trace.png").exists()
    # an empty store is an error (issue 18): nothing is written
    with ResultStore(tmp_path / "empty.db") as s, pytest.raises(ConfigError, match="is empty: nothing to report"):
        write_report(s, None, tmp_path / "out2", progress=False)
    assert not (tmp_path / "out2").exists()


def test_cli_report_and_bad_study(report, demo_store, tmp_path):
    out = tmp_path / "cli"
    r = subprocess.run([sys.executable, "-m", "codesign", "report", "--store", str(demo_store.path), "--study",
                        "demo", "--out", str(out), "--n-boot", "0", "--no-progress"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (out / "report.html").exists() and "report written to" in r.stdout
    r = subprocess.run([sys.executable, "-m", "codesign", "report", "--store", str(demo_store.path), "--study",
                        "nope", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    assert "no study named 'nope'" in r.stderr and "demo" in r.stderr
    r = subprocess.run([sys.executable, "-m", "codesign", "report", "--store", str(demo_store.path), "--spec",
                        "h900-imaginary", "--out", str(out), "--n-boot", "0"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 2 and "h900-imaginary" in r.stderr and "h100-sxm" in r.stderr  # names allowed specs
    r = subprocess.run([sys.executable, "-m", "codesign", "report", "--store", str(tmp_path / "missing.db"),
                        "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "missing.db" in r.stderr and "does not exist" in r.stderr
    assert not (tmp_path / "missing.db").exists()  # reporting never creates an empty store


def test_report_on_a_real_explore_study(tmp_path):
    """The explore stage's own study records (real search, real voting, real hardware model) report cleanly."""
    from codesign.explore.config import StudyConfig, study_config_dict
    from codesign.explore.study import build_context, run_study
    from codesign.explore.synthetic import fill_synthetic_store, synthetic_catalogue
    from codesign.report import write_report

    tasks = ["advglue", "fairness", "ethics", "ood"]
    members = synthetic_catalogue(methods=("rtn",), bits=(3, 4, 8))
    cfg = StudyConfig.model_validate(dict(
        name="rt", catalogue={"methods": ["rtn"], "bits": [3, 4, 8]}, tasks=tasks, mode="loglik",
        objectives=["trust", "tpot_ms"], specs=["h100-sxm", "mpu-hypo"], schedules=["sequential", "parallel"],
        max_members=3, methods=["random"], exhaustive_max=100, constraints={"max_tpot_ms": 50.0},
        optimizer={"q": 2, "n_init": 4, "iterations": 2}))
    with ResultStore(tmp_path / "r.db") as store:
        fill_synthetic_store(store, members, tasks, limit=12, seed=0)
        ctx = build_context(cfg, store, members=members, progress=False)
        store.create_study("rt", study_config_dict(cfg))
        run_study(ctx)
        html = write_report(store, None, tmp_path / "out", progress=False, n_boot=0)
    out = tmp_path / "out"
    assert (out / "pareto_trust_vs_tpot_ms.svg").exists() and (out / "optimizer_trace.png").exists()
    assert not (out / "pareto_projections.png").exists()  # two objectives: no projections
    text = html.read_text()
    assert "answers <code>loglik</code>" in text  # the study's scoring mode, not a guess
    assert "@ mpu-hypo" in text and "@ h100-sxm" in text  # two specs: labels say which
    import pandas as pd

    rec = pd.read_csv(out / "recommendations.csv")
    assert (rec["tpot_ms"] <= 50.0).all() and len(rec) >= 1
    hv = pd.read_csv(out / "optimizer_hv.csv")
    assert set(hv["method"]) == {"random", "exhaustive"}
    # the exhaustive front bounds what random search found
    assert hv.set_index("method").loc["exhaustive", "final HV (mean)"] >= hv.set_index("method").loc[
        "random", "final HV (mean)"] - 1e-9


def test_hardware_tables_come_from_the_hardware_model(report):
    """Predictions beside measurements, and roofline operators, are the analytical model's own numbers."""
    import hwmodels
    import pandas as pd

    out, _ = report
    lat = pd.read_csv(out / "latency.csv")
    assert len(lat) == 3
    row = lat[lat["wbits"] == 4].iloc[0]
    est = hwmodels.estimate(hwmodels.load_spec("h100-sxm"), hwmodels.load_shape("llama-2-7b"), wbits=4,
                            group_size=128, batch=1, prompt_len=512, gen_len=64)
    assert row["TPOT predicted (ms)"] == pytest.approx(est.tpot_ms)
    assert row["prefill predicted (ms)"] == pytest.approx(est.ttft_ms)
    assert row["TPOT error (%)"] == pytest.approx(100 * (est.tpot_ms / 3.2 - 1))
    ops = pd.read_csv(out / "roofline_ops.csv")
    assert set(ops["phase"]) == {"prefill", "decode"} and set(ops["bits"]) == {2, 3, 4, 8, 16}
    # decode GEMVs are memory-bound with low intensity; fewer weight bits raise their intensity
    q = ops[(ops["phase"] == "decode") & (ops["op"] == "q_proj")].set_index("bits")["intensity (FLOP/byte)"]
    assert q[16] < 2 < q[4] < q[2] and (ops.loc[ops["phase"] == "decode", "intensity (FLOP/byte)"] < 100).all()


def test_report_on_a_study_without_a_stored_result_says_how_to_finish_it(tmp_path):
    """An interrupted study has points but no result: the report shows no front it would have to compute."""
    from codesign.explore.config import StudyConfig, study_config_dict
    from codesign.records import Configuration, StudyPoint
    from codesign.report import write_report

    with build_store(tmp_path / "r.db", study=False, measurements=False, n_items=8) as s:
        cfg = StudyConfig.model_validate({**STUDY_CONFIG, "name": "half"})
        s.create_study("half", study_config_dict(cfg))
        vid = VariantSpec(MODEL, "rtn", 4, 128).variant_id
        s.add_study_point(StudyPoint("half", "bo", 0, 0, 0, Configuration((vid,), "sequential", "h100-sxm"),
                                     {"trust": 60.0, "tpot_ms": 0.2, "peak_memory_gb": 0.1}, True))
        html = write_report(s, "half", tmp_path / "out", progress=False, n_boot=0)
    text = html.read_text()
    assert "no stored result yet" in text and "re-run `codesign explore`" in text
    assert not (tmp_path / "out" / "pareto_front.csv").exists() and not (tmp_path / "out" / "optimizer_hv.csv").exists()
