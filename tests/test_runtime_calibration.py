"""Calibration learns a runtime profile from measurements the model did not generate; profiles reach
explore; every stage resolves model shapes through the one resolver."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import hwmodels
from codesign.config import ConfigError
from codesign.cost.calibrate import calibrate, load_measurements, runtime_param

ROOT = Path(__file__).resolve().parents[1]
SPEC = {"name": "gen-cpu", "memory": {"capacity_gb": 16.0, "bandwidth_gbs": 40.0},
        "compute_tflops": {"bf16": 0.8}, "vector_tflops": 0.02,
        "efficiency": {"default": {"compute": 1.0, "memory": 1.0}}}
PROFILE = {"name": "gen-stack", "device": "cpu", "framework": {"async_launch": False},
           "formats": {"dense": "torch-matmul", "w4": "aten-int4pack-cpu", "w8": "aten-int8pack-cpu"},
           "kernels": {"aten-int4pack-cpu": {"dequant": "none"}, "aten-int8pack-cpu": {"dequant": "none"}}}
# the generator's truth: streaming efficiency per kernel and a per-layer host time
TRUTH = {"torch-matmul": 0.6, "aten-int8pack-cpu": 0.45, "aten-int4pack-cpu": 0.3}
HOST_LAYER_US = 1500.0
SHAPES = {"llama-2-7b": 1, "qwen2.5-0.5b": 6}


def _bytes_per_token(shape, wbits: int, group: int, ctx: float) -> tuple[float, float]:
    """(linear weight bytes incl. group scales/zeros, everything else streamed per decode step)."""
    lin = shape.n_layers * shape.linear_params_per_layer
    q = lin * (wbits / 8 + (2 + wbits / 8) / group) if wbits < 16 else lin * 2
    head = shape.vocab * shape.hidden * 2
    kv = 2 * shape.n_layers * shape.kv_dim * ctx * 2
    return q, head + kv


def _generated() -> pd.DataFrame:
    """Decode and prefill times from an independent generator: per kernel streaming at the truth
    efficiency, compute and memory combined as a smooth p-norm (not the model's max), per-layer host
    time, lognormal noise of 3 % -- a different functional form from the model under test."""
    rng = np.random.default_rng(7)
    rows = []
    for name, layers in SHAPES.items():
        cfg = {k: v for k, v in json.loads((ROOT / "hwmodels" / "shapes" / f"{name}.json").read_text()).items()
               if not k.startswith("_")} | {"num_hidden_layers": layers}
        short = hwmodels.shape_from_config(cfg, name=f"{name}-L{layers}")
        for wbits, kernel in ((16, "torch-matmul"), (8, "aten-int8pack-cpu"), (4, "aten-int4pack-cpu")):
            for batch in (1, 2, 4):
                for plen in (16, 64):
                    ctx = plen + 4
                    q, rest = _bytes_per_token(short, wbits, 128, ctx)
                    t_mem = q / (40e9 * TRUTH[kernel]) + rest / (40e9 * TRUTH["torch-matmul"])
                    lin_flops, head_flops = 2 * short.n_layers * short.linear_params_per_layer, 2 * short.vocab * short.hidden
                    t_comp = (lin_flops + head_flops) * batch / 0.8e12
                    dec = (t_mem**4 + t_comp**4) ** 0.25 + short.n_layers * HOST_LAYER_US * 1e-6
                    t_comp_p = (lin_flops * plen + head_flops) * batch / 0.8e12  # logits of the last position
                    pre = (t_mem**4 + t_comp_p**4) ** 0.25 + short.n_layers * HOST_LAYER_US * 1e-6
                    noise = rng.lognormal(0.0, 0.03, 2)
                    rows.append(dict(model=f"random:{name}", variant="dense" if wbits == 16 else f"w{wbits}g128",
                                     wbits=wbits, group_size=128, dtype="bfloat16", device="cpu", device_name="gen",
                                     batch=batch, prompt_len=plen, gen_len=8, kernel=kernel,
                                     prefill_ms=pre * 1e3 * noise[0], tpot_ms=dec * 1e3 * noise[1],
                                     extra_json=json.dumps({"layers": layers, "config": cfg})))
    return load_measurements(pd.DataFrame(rows))


def test_calibration_recovers_profile_parameters_from_an_independent_generator(tmp_path):
    spec = tmp_path / "gen-cpu.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    prof = tmp_path / "gen-stack.yaml"
    prof.write_text(yaml.safe_dump(PROFILE))
    pairs = (("torch-matmul", "dense"), ("aten-int8pack-cpu", "w8"), ("aten-int4pack-cpu", "w4"))
    fit = [f"kernels.{k}.memory_efficiency.{f}" for k, f in pairs]
    res = calibrate(spec, _generated(), runtime=prof, fit=fit + ["framework.per_layer_us"], test_frac=0.3, seed=0,
                    progress=False)
    rt = res.calibrated
    for kernel, fmt in (("torch-matmul", "dense"), ("aten-int8pack-cpu", "w8"), ("aten-int4pack-cpu", "w4")):
        assert rt["kernels"][kernel]["memory_efficiency"][fmt] == pytest.approx(TRUTH[kernel], rel=0.15), kernel
    assert rt["framework"]["per_layer_us"] == pytest.approx(HOST_LAYER_US, rel=0.25)
    # what is left is the generator's own form (p-norm overlap, no small operators), not noise
    assert res.mape("test", "before") > 30 and res.mape("test", "after") < 12
    by = res.mape_by_format("test")
    assert set(by) == {"dense/torch-matmul", "w8g128/aten-int8pack-cpu", "w4g128/aten-int4pack-cpu"}
    assert max(by.values()) < 12
    # written as a valid profile beside the original, the spec untouched
    assert res.out_path == tmp_path / "gen-stack.calibrated.yaml"
    loaded = hwmodels.load_runtime(res.out_path)
    assert loaded.calibration["n_test"] == int((res.table.split == "test").sum()) and loaded.name == "gen-stack.calibrated"
    assert yaml.safe_load(spec.read_text()) == SPEC


def test_calibration_of_the_cpu_profile_on_real_rows_improves_held_out_error():
    """The recorded 1-thread bf16 rows of this CPU (experiments/calibration), every sensitive parameter."""
    meas = load_measurements(ROOT / "experiments" / "calibration" / "measurements.csv", dtype="bfloat16")
    res = calibrate(ROOT / "experiments" / "calibration" / "dev-cpu-1t.yaml", meas,
                    runtime=ROOT / "hwmodels" / "runtimes" / "default.yaml", test_frac=0.3, seed=0, write=False,
                    progress=False)
    assert any(p.endswith("memory_efficiency.dense") for p in res.fitted)
    assert res.mape("test", "after") < 0.5 * res.mape("test", "before")
    assert res.log_rmse("train", "after") <= res.log_rmse("train", "before")


def test_a_memory_floor_hidden_under_compute_is_fitted_on_real_rows():
    """Recorded dense bf16 rows of packed_measurements.csv (llama-2-7b x2 and qwen2.5-0.5b): decode at batch
    1 and 4 is flat (the weights' streaming), while the base profile prices every row compute-bound (a
    large small-M half point), so its memory efficiency changes no prediction unless moved far. The fit
    must still see and fit it, and then price llama's decode at batch 4 no slower than at batch 1 + 10 %."""
    from codesign.cost.calibrate import Params, Predictor, sensitive

    exp = ROOT / "experiments" / "calibration"
    rows = pd.read_csv(exp / "packed_measurements.csv")
    meas = load_measurements(rows[rows["variant"] == "dense"])
    base = {"spec": yaml.safe_load((exp / "dev-cpu-1t.yaml").read_text()),
            "runtime": yaml.safe_load((exp / "torch-cpu.base.yaml").read_text())}
    mem = runtime_param("kernels.torch-matmul.memory_efficiency.dense")
    pred = Predictor(meas)
    ref = pred.predict_state(base)
    assert np.allclose(pred.predict_state(Params([mem]).apply(base, [0.5 * mem.get(base)])), ref)  # hidden
    assert sensitive(pred, base, [mem]) == [mem]
    k = "kernels.torch-matmul."
    res = calibrate(exp / "dev-cpu-1t.yaml", meas, runtime=exp / "torch-cpu.base.yaml", test_frac=0.0, write=False,
                    progress=False, fit=[k + "memory_efficiency.dense", k + "compute_efficiency.dense",
                                         k + "compute_m_half", "framework.per_layer_us"])
    t = res.table.set_index(["model", "batch", "prompt_len"])
    llama = t.loc["random:llama-2-7b"]
    assert llama.loc[(4, 16), "tpot_ms_after"] < 1.1 * llama.loc[(1, 16), "tpot_ms_after"]
    assert llama.loc[(4, 16), "tpot_ms_before"] > 1.1 * llama.loc[(1, 16), "tpot_ms_before"]  # compute-bound before
    assert res.calibrated["kernels"]["torch-matmul"]["memory_efficiency"]["dense"] < 0.5
    assert res.mape("train", "after") < 8.0


def test_decode_half_point_starts_at_the_prefill_one():
    state = {"runtime": {"kernels": {"torch-matmul": {"compute_m_half": 16.0}}}}
    dec = runtime_param("kernels.torch-matmul.compute_m_half_decode")
    assert dec.get(state) == 16.0
    dec.set(state, 3.0)
    assert dec.get(state) == 3.0 and state["runtime"]["kernels"]["torch-matmul"]["compute_m_half"] == 16.0
    assert runtime_param("kernels.aten-int4pack-cpu.compute_m_half_decode").get(state) == 0.0


def test_fit_names_are_checked():
    with pytest.raises(ConfigError, match="not a fittable runtime parameter"):
        runtime_param("kernels.awq-gemm.colour")
    with pytest.raises(ConfigError, match="--dtype: 'float64'"):
        load_measurements(ROOT / "experiments" / "calibration" / "measurements.csv", dtype="float64")


def test_explore_prices_configurations_under_the_study_runtime(tmp_path):
    from codesign.explore.config import Workload, load_study_config, study_config_dict
    from codesign.explore.evaluator import CostTable
    from codesign.explore.space import Configuration

    shape = hwmodels.load_shape("llama-2-7b")
    plain = CostTable(shape, {"m4": 4}, {"m4": 128}, Workload())
    stack = CostTable(shape, {"m4": 4}, {"m4": 128}, Workload(), hwmodels.load_runtime("tinychat-awq"))
    cfg = Configuration(("m4",), "sequential", "a100-80gb")
    assert stack.costs(cfg)["tpot_ms"] > 1.5 * plain.costs(cfg)["tpot_ms"]
    p = tmp_path / "study.yaml"
    p.write_text("catalogue: {methods: [rtn], bits: [4, 8]}\nobjectives: [trust, tpot_ms]\n")
    assert "runtime" not in study_config_dict(load_study_config(p))  # resume keys of older studies unchanged
    p.write_text(p.read_text() + "runtime: gpt-fast\n")
    assert study_config_dict(load_study_config(p))["runtime"] == "gpt-fast"


@pytest.mark.parametrize("model, expected", [
    ("random:llama-2-7b", "llama-2-7b"), ("HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2-135m"),
    ("meta-llama/Llama-2-7b-chat-hf", "llama-2-7b"), ("Qwen/Qwen2.5-0.5B-Instruct", "qwen2.5-0.5b"),
    ("tiny-llama", "tiny-llama")])
def test_one_shape_resolver(model, expected, tmp_path):
    from codesign.explore.config import load_study_config

    assert hwmodels.shape_name(model) == expected
    assert hwmodels.resolve_shape(model).name == expected
    p = tmp_path / "study.yaml"
    p.write_text(f"model: {model}\ncatalogue: {{methods: [rtn], bits: [4]}}\nobjectives: [trust, tpot_ms]\n")
    assert load_study_config(p).resolve_shape() == expected
    cfg = json.loads((ROOT / "hwmodels" / "shapes" / "llama-2-7b.json").read_text()) | {"num_hidden_layers": 2}
    assert hwmodels.resolve_shape("random:llama-2-7b", config=cfg, layers=2).n_layers == 2
    with pytest.raises(ConfigError, match="cannot infer a model shape for 'no/such-model'"):
        hwmodels.shape_name("no/such-model")


def test_published_points_cite_sources_and_resolve(tmp_path):
    """Every published point names a known source, spec, shape, profile and kernel; the held-out
    median error of the fitted profiles stays within 15 % for 16-bit and 4-bit decode."""
    import subprocess
    import sys

    data = yaml.safe_load((ROOT / "experiments" / "published" / "points.yaml").read_text())
    for src in data["sources"].values():
        assert src["url"].startswith("https://github.com/") and "/blob/" in src["url"] and src["setup"]
    for p in data["points"]:
        assert p["source"] in data["sources"], p["id"]
        hwmodels.load_spec(p["spec"]), hwmodels.load_shape(p["model"])
        assert p["kernel"] in hwmodels.KERNELS, p["id"]
        assert hwmodels.load_runtime(p["runtime"]).calibration, p["id"]
    assert len({p["id"] for p in data["points"]}) == len(data["points"])
    r = subprocess.run([sys.executable, str(ROOT / "experiments" / "published" / "run.py"), "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    summary = pd.DataFrame(json.loads((tmp_path / "results.json").read_text())["summary"])
    pooled = summary[summary.runtime == "(all)"].set_index("format")
    assert pooled.loc["fp16", "after"] <= 15 and pooled.loc["w4", "after"] <= 15
    assert pooled.loc["w4", "before"] > 2 * pooled.loc["w4", "after"]  # the stack terms are what 4-bit needed


def test_hw_and_calibrate_cli_with_a_runtime(tmp_path):
    import subprocess
    import sys

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "codesign", *args], capture_output=True, text=True)

    r = cli("hw", "--spec", "a100-80gb", "--model", "llama-2-7b", "--wbits", "4", "--runtime", "gpt-fast", "--json")
    plain = cli("hw", "--spec", "a100-80gb", "--model", "llama-2-7b", "--wbits", "4", "--json")
    assert r.returncode == 0 and plain.returncode == 0, r.stderr
    assert json.loads(r.stdout)["runtime"] == "gpt-fast"
    assert json.loads(r.stdout)["tpot_ms"] > 1.5 * json.loads(plain.stdout)["tpot_ms"]
    assert "gpt-fast" in cli("hw", "--list").stdout and "runtime-profile" in cli("hw", "--runtime-schema").stdout
    out = tmp_path / "stack.yaml"
    r = cli("calibrate", "--spec", str(ROOT / "experiments" / "calibration" / "dev-cpu-1t.yaml"), "--measurements",
            str(ROOT / "experiments" / "calibration" / "measurements.csv"), "--dtype", "bfloat16", "--runtime",
            "default", "--fit", "framework.per_layer_us,kernels.torch-matmul.memory_efficiency.dense", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "held-out MAPE by format: dense/torch-matmul" in r.stdout and hwmodels.load_runtime(out).calibration
    bad = cli("calibrate", "--spec", str(ROOT / "experiments" / "calibration" / "dev-cpu-1t.yaml"), "--measurements",
              str(ROOT / "experiments" / "calibration" / "measurements.csv"), "--fit", "framework.per_layer_us")
    assert bad.returncode == 2 and "--fit: names runtime-profile parameters" in bad.stderr


def test_phase_kernels_and_ensemble_schedules_are_keyed_and_predicted_per_row():
    """Measured CPU rows: prefill on a dequantized copy is priced as the dense GEMM it ran, decode on
    the packed kernel; ensemble rows go through the schedule formulas, never pooled with single rows."""
    from codesign.cost.calibrate import Predictor

    exp = ROOT / "experiments" / "calibration"
    single = pd.concat([pd.read_csv(exp / f) for f in ("packed_measurements.csv", "phase_measurements.csv")])
    single = single[(single["model"] == "random:llama-2-7b") & (single["batch"] == 4) & (single["prompt_len"] == 16)]
    df = load_measurements(single)
    keys = dict(zip(df["config_key"], df["prefill_kernel"]))
    w4 = [k for k in keys if "|w4g128|aten-int4pack-cpu|" in k]
    assert len(w4) == 2 and keys[[k for k in w4 if "prefill=torch-matmul" in k][0]] == "torch-matmul"
    profile = yaml.safe_load((ROOT / "hwmodels" / "runtimes" / "torch-cpu.yaml").read_text())
    spec = yaml.safe_load((exp / "dev-cpu-1t.yaml").read_text())
    pred = pd.DataFrame(Predictor(df).predict(spec, profile), columns=["pre", "dec"], index=df["config_key"])
    dense = pred.loc[[k for k in keys if "|dense|" in k][0]]
    packed_pre, copy_pre = (pred.loc[[k for k in w4 if ("prefill=" in k) == c][0]] for c in (False, True))
    assert copy_pre["pre"] == pytest.approx(dense["pre"])  # the same dense GEMM on 16-bit weights
    assert copy_pre["dec"] == pytest.approx(packed_pre["dec"]) and packed_pre["pre"] != pytest.approx(dense["pre"])

    ens = pd.read_csv(exp / "packed_ensembles.csv")
    ens = ens[(ens["model"] == "random:llama-2-7b") & (ens["batch"] == 4) & (ens["prompt_len"] == 16)
              & ens["kernel"].str.endswith("x2-cpu")]
    edf = load_measurements(ens)
    assert sorted(edf["schedule"]) == ["batched", "sequential"] and all(edf["config_key"].str.contains("|sequential|")
                                                                         | edf["config_key"].str.contains("|batched|"))
    epred = Predictor(edf).predict(spec, profile)
    seq = epred[list(edf["schedule"]).index("sequential")]
    members = pred.loc[[k for k in keys if ("|w4g128|aten-int4pack-cpu|" in k or "|w8g128|aten-int4pack-x2-cpu|" in k)
                        and "prefill=" not in k]].sum()
    assert seq == pytest.approx([members["pre"], members["dec"]])  # sequential: the members' times add
    assert (epred[list(edf["schedule"]).index("batched")] <= seq * (1 + 1e-9)).all()


def test_calibrate_names_a_bad_profile_or_spec_file(tmp_path):
    from codesign.cost.calibrate import calibrate as fit

    bad = tmp_path / "stack.yaml"
    bad.write_text(yaml.safe_dump({"name": "stack", "kernels": {"aten-int4pack-cpu": {"tile_m": 0}}}))
    rows = ROOT / "experiments" / "calibration" / "measurements.csv"
    with pytest.raises(ConfigError, match=rf"{bad}.*\n.*kernels.aten-int4pack-cpu.tile_m = 0.*allowed: >= 1"):
        fit(ROOT / "experiments" / "calibration" / "dev-cpu-1t.yaml", rows, runtime=bad, write=False, progress=False)
    nameless = tmp_path / "nameless.yaml"
    nameless.write_text("description: no name\n")
    with pytest.raises(ConfigError, match=rf"{nameless}.*\n.*name: Field required"):
        fit(ROOT / "experiments" / "calibration" / "dev-cpu-1t.yaml", rows, runtime=nameless, write=False,
            progress=False)
    spec = tmp_path / "box.yaml"
    spec.write_text(yaml.safe_dump({"name": "box", "compute_tflops": {"bf16": -1},
                                    "memory": {"bandwidth_gbs": 1, "capacity_gb": 1}}))
    with pytest.raises(ConfigError, match=rf"{spec}.*\n.*compute_tflops"):
        fit(spec, rows, write=False, progress=False)
