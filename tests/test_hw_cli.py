"""`codesign hw` through the real console entry point (subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REQUIRED = {"ttft_ms", "tpot_ms", "tokens_per_s", "weight_bytes", "kv_bytes", "peak_memory_bytes", "fits",
            "energy_per_token_j"}


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "codesign", "hw", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "COLUMNS": "120", **(env or {})})


def test_json_contract_13b_fp16_floor():
    r = run("--spec", "h100-sxm", "--model", "llama-2-13b", "--wbits", "16", "--group-size", "128", "--abits", "16",
            "--kvbits", "16", "--batch", "1", "--prompt-len", "512", "--gen-len", "128", "--ideal", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert REQUIRED <= set(d)
    assert d["tpot_ms"] == pytest.approx(7.81, rel=0.01) and d["fits"] is True and d["decode_bound"] == "memory"
    assert {o["bound"] for o in d["ops"]} == {"memory", "compute"}


def test_table_output_and_ensemble(tmp_path):
    r = run("--spec", "mpu-hypo", "--model", "llama-2-7b", "--wbits", "4")
    assert r.returncode == 0, r.stderr
    for needle in ("time per output token", "w4a16", "per operator", "down_proj", "memory", "mm2"):
        assert needle in r.stdout
    r = run("--spec", "mpu-hypo", "--model", "llama-2-7b", "--ensemble", "3,4,8", "--schedule", "sliced",
            "--gated-fraction", "0.3", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert REQUIRED <= set(d) and d["schedule"] == "sliced" and [m["bits"] for m in d["members"]] == [3, 4, 8]
    assert d["area_mm2"] > 0 and d["members"][2]["run_fraction"] == 0.3


def test_sweep_json_has_one_row_per_configuration():
    r = run("--model", "qwen2.5-0.5b", "--wbits", "2,4,8,16", "--batch", "1,32", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["rows"]
    assert len(rows) == 8 and REQUIRED <= set(rows[0])
    assert [x["wbits"] for x in rows] == [2, 2, 4, 4, 8, 8, 16, 16]


def test_bad_spec_file_and_values_exit_2_with_clear_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "x", "memory": {"capacity_gb": 8}, "compute_tflops": {"fp16": 1}}))
    r = run("--spec", str(bad))
    assert r.returncode == 2 and "error:" in r.stderr and str(bad) in r.stderr and "memory.bandwidth_gbs" in r.stderr
    r = run("--schedule", "round-robin", "--ensemble", "4,8")
    assert r.returncode == 2 and "allowed: sequential, parallel, batched, sliced" in r.stderr
    r = run("--wbits", "40")
    assert r.returncode == 2 and "--wbits: 40 is not allowed (allowed: 1 to 32)" in r.stderr


def test_schema_and_list():
    r = run("--schema")
    assert r.returncode == 0
    assert "compute_tflops" in json.loads(r.stdout)["properties"]
    r = run("--list", "--json")
    d = json.loads(r.stdout)
    assert {"h100-sxm", "mpu-hypo"} <= set(d["specs"]) and "llama-2-13b" in d["shapes"]


def test_speed_benchmark_runs_and_writes_results(tmp_path):
    out = tmp_path / "results.json"
    r = subprocess.run([sys.executable, "experiments/roofline_speed/bench.py", "--quick", "--repeats", "1",
                        "--out", str(out)], capture_output=True, text=True, timeout=300,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["configs"] > 1000 and res["vectorized_configs_per_s"] > res["loop_configs_per_s"] > 0
    assert res["max_rel_diff_loop_vs_grid"] < 1e-9  # the loop and the grid compute the same numbers
    assert "configs/s" in r.stdout


def test_prefill_kernel_follows_the_measured_path_on_the_cpu_profile():
    """torch-cpu, w4: prefill on the dense copy (as `measure --prefill auto`), the copy in memory;
    --prefill-kernel prices it on the packed kernel (as `measure --prefill packed`)."""
    spec = str(Path(__file__).resolve().parents[1] / "experiments" / "calibration" / "dev-cpu-1t.yaml")
    base = ("--spec", spec, "--model", "llama-2-7b", "--runtime", "torch-cpu",
            "--prompt-len", "64", "--gen-len", "8", "--json", "--no-ops")
    auto, packed, dense = (json.loads(run(*base, *extra).stdout) for extra in
                           (("--wbits", "4"), ("--wbits", "4", "--prefill-kernel", "aten-int4pack-cpu"),
                            ("--wbits", "16")))
    assert auto["ttft_ms"] == pytest.approx(dense["ttft_ms"]) and packed["ttft_ms"] != pytest.approx(dense["ttft_ms"])
    assert auto["tpot_ms"] == pytest.approx(packed["tpot_ms"]) and auto["tpot_ms"] < dense["tpot_ms"]
    copy = auto["weight_bytes"] - packed["weight_bytes"]
    assert copy == pytest.approx(2 * 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008))  # 16-bit linears of 32 layers
    r = run(*base, "--wbits", "4", "--prefill-kernel", "no-such-kernel")
    assert r.returncode == 2 and r.stderr.startswith("error:") and "no-such-kernel" in r.stderr
