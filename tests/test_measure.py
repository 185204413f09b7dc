"""Measured runs: timer/memory selection per device, weight-format parsing, real CPU timing of tiny
models (prefill + KV-cached decode), storage with device/version tags, resume, CLI."""

import json
import subprocess
import sys
import time

import pytest

from codesign.config import ConfigError
from codesign.cost.measure import WeightFormat, build_model, measure, parse_weight_format, time_generation
from codesign.cost.timers import (CudaEventTimer, PeakMemory, WallTimer, device_kind, rss_high_water_bytes,
                                  timer_for)


def test_timer_selection_by_device():
    assert isinstance(timer_for("cpu"), WallTimer)
    assert isinstance(timer_for("cuda"), CudaEventTimer)
    assert isinstance(timer_for("cuda:1"), CudaEventTimer) and timer_for("cuda:1").device == "cuda:1"
    assert device_kind("CUDA:0") == "cuda" and device_kind("cpu") == "cpu"
    assert PeakMemory("cuda:0").kind == "cuda" and PeakMemory("cpu").kind == "cpu"  # allocator vs RSS high-water
    with pytest.raises(ConfigError, match="allowed: cpu, cuda"):
        timer_for("tpu")


def test_cuda_timer_without_gpu_fails_clearly():
    import torch

    if torch.cuda.is_available():
        t = timer_for("cuda")
        t.start()
        torch.cuda._sleep(1000)
        assert t.stop() > 0
    else:
        with pytest.raises(RuntimeError, match="no CUDA device"):
            timer_for("cuda").start()


def test_wall_timer_measures_real_time():
    t = timer_for("cpu")
    t.start()
    time.sleep(0.03)
    ms = t.stop()
    assert 29.0 <= ms < 500.0
    calls = []
    sync = WallTimer(sync=lambda: calls.append(1))
    sync.start()
    sync.stop()
    assert len(calls) == 2  # synchronized before reading the clock at both ends


def test_cpu_peak_memory_tracks_an_allocation():
    import numpy as np

    mem = PeakMemory("cpu")
    mem.reset()
    before = mem.peak_bytes()
    buf = np.ones(200 * 2**20 // 8)  # 200 MiB, touched
    peak = mem.peak_bytes()
    del buf
    assert peak - before > 150 * 2**20
    assert rss_high_water_bytes() >= peak - 16 * 2**20  # high-water stays up (kernel RSS counters are approximate)
    if mem.resettable:  # Linux: the mark goes back down after a reset
        mem.reset()
        assert mem.peak_bytes() < peak - 100 * 2**20


def test_parse_weight_format():
    assert parse_weight_format("dense").is_dense
    f = parse_weight_format("w4g128")
    assert (f.bits, f.group_size, f.sym, f.name) == (4, 128, False, "w4g128")
    assert parse_weight_format("rtn-w8gpc").group_size == -1
    assert parse_weight_format("w3g64-sym").sym
    assert f.wbits("float32") == 4 and WeightFormat("dense").wbits("bfloat16") == 16
    with pytest.raises(ConfigError, match="2..8"):
        parse_weight_format("w9g128")
    with pytest.raises(ConfigError, match=r"'int4'.*allowed: dense, w<bits>g<group>"):
        parse_weight_format("int4")


def test_variant_from_store_resolves(store):
    from codesign.records import VariantSpec

    v = VariantSpec("tiny-llama", "gptq", 3, 32)
    store.add_variant(v)
    f = parse_weight_format(v.variant_id, store)
    assert (f.bits, f.group_size, f.variant_id) == (3, 32, v.variant_id)


def test_truncated_random_shape_keeps_widths():
    m, cfg = build_model("random:smollm2-135m", WeightFormat("dense"), layers=1)
    assert cfg["num_hidden_layers"] == 1 and len(m.model.layers) == 1
    assert cfg["hidden_size"] == 576 and cfg["vocab_size"] == 49152  # the real shape's widths
    with pytest.raises(ConfigError, match=r"--layers: 31 .*1\.\.30"):
        build_model("random:smollm2-135m", WeightFormat("dense"), layers=31)


def test_time_generation_prefill_and_cached_decode(tiny_llama):
    r = time_generation(tiny_llama.model, batch=2, prompt_len=16, gen_len=3, repeats=2, warmup=1)
    assert r["prefill_ms"] > 0 and r["tpot_ms"] > 0
    assert len(r["prefill_runs_ms"]) == 2 and len(r["tpot_runs_ms"]) == 2
    assert r["peak_mem_bytes"] > 50 * 2**20  # the whole process (python + torch) at least


def test_decode_uses_the_kv_cache(tiny_llama):
    # With a cache a decode step processes one token; without, it would re-run the prompt, so a
    # long prompt must cost prefill far more than one decode step.
    r = time_generation(tiny_llama.model, batch=4, prompt_len=512, gen_len=4, repeats=2, warmup=1)
    assert r["prefill_ms"] > 2 * r["tpot_ms"]


def test_measure_stores_tagged_rows_and_resumes(store):
    rows = measure("random:smollm2-135m", [WeightFormat("dense")], dtypes=["float32", "bfloat16"], batches=[1, 2],
                   prompt_lens=[8], gen_len=2, layers=1, repeats=1, store=store, progress=False)
    assert len(rows) == 4
    df = store.frame("measurements")
    assert len(df) == 4 and set(df["device"]) == {"cpu"} and set(df["dtype"]) == {"float32", "bfloat16"}
    assert sorted(df["wbits"].unique().tolist()) == [16, 32]
    versions = json.loads(df["versions_json"][0])
    assert {"torch", "transformers", "python", "threads"} <= set(versions)
    extra = json.loads(df["extra_json"][0])
    assert extra["layers"] == 1 and extra["config"]["num_hidden_layers"] == 1
    assert (df["prefill_ms"] > 0).all() and (df["tpot_ms"] > 0).all() and (df["peak_mem_bytes"] > 0).all()
    # an interrupted or repeated sweep measures only what is missing
    again = measure("random:smollm2-135m", [WeightFormat("dense")], dtypes=["float32"], batches=[1, 2, 3],
                    prompt_lens=[8], gen_len=2, layers=1, repeats=1, store=store, progress=False)
    assert [r.batch for r in again] == [3]
    forced = measure("random:smollm2-135m", [WeightFormat("dense")], dtypes=["float32"], batches=[1],
                     prompt_lens=[8], gen_len=2, layers=1, repeats=1, store=store, force=True, progress=False)
    assert len(forced) == 1 and len(store.frame("measurements")) == 6


def test_measure_rejects_cuda_without_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ConfigError, match="no CUDA device"):
        measure("tiny-llama", [WeightFormat("dense")], device="cuda", progress=False)


def test_packed_weights_path(store):
    qlinear = pytest.importorskip("codesign.quantize.qlinear")
    m, _ = build_model("tiny-llama", parse_weight_format("w4g32"))
    assert any(isinstance(x, qlinear.QuantLinear) for x in m.modules())
    rows = measure("tiny-llama", [parse_weight_format("w4g32")], batches=[1], prompt_lens=[8], gen_len=2,
                   repeats=1, store=store, progress=False)
    assert rows[0].wbits == 4 and rows[0].group_size == 32 and rows[0].tpot_ms > 0


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "codesign", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_cli_measure_and_bad_input(tmp_path):
    db, csv = tmp_path / "m.db", tmp_path / "m.csv"
    r = _cli("measure", "--model", "tiny-llama", "--batch", "1,2", "--prompt-len", "8", "--gen-len", "2",
             "--repeats", "1", "--store", str(db), "--csv", str(csv))
    assert r.returncode == 0, r.stderr
    assert "prefill ms" in r.stdout and csv.exists()
    import pandas as pd

    assert sorted(pd.read_csv(csv)["batch"].tolist()) == [1, 2]
    bad = _cli("measure", "--model", "tiny-llama", "--variant", "w4x", "--store", str(db))
    assert bad.returncode == 2 and "--variant: 'w4x'" in bad.stderr and "allowed" in bad.stderr
    bad = _cli("measure", "--model", "tiny-llama", "--dtype", "float64", "--batch", "1", "--store", str(db))
    assert bad.returncode == 2 and "float64" in bad.stderr and "bfloat16" in bad.stderr


def test_busy_fraction_and_quiet_wait():
    from codesign.cost.timers import cpu_busy_fraction, wait_for_quiet

    busy = cpu_busy_fraction(0.05)
    assert busy is None or 0.0 <= busy <= 1.0
    t0 = time.monotonic()
    wait_for_quiet(0.0, timeout_s=0.0, interval_s=0.05)  # never quiet enough: returns at the deadline
    assert time.monotonic() - t0 < 2.0
    assert wait_for_quiet(1.0, timeout_s=60.0, interval_s=0.05) is not None or busy is None  # always quiet enough
    with pytest.raises(ConfigError, match="--wait-quiet: 1.5"):
        measure("tiny-llama", [WeightFormat("dense")], wait_quiet=1.5, progress=False)


def test_public_api_is_lazy():
    code = "import sys, codesign.cost as c; assert 'torch' not in sys.modules; c.parse_weight_format; print('ok')"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_measure_a_stored_quantized_variant(store):
    pytest.importorskip("codesign.quantize.variant")
    from codesign.records import VariantSpec

    v = VariantSpec("tiny-llama", "rtn", 4, 32)
    store.add_variant(v)
    fmt = parse_weight_format(v.variant_id, store)
    rows = measure("tiny-llama", [fmt], batches=[1], prompt_lens=[8], gen_len=2, repeats=1, store=store,
                   progress=False)
    assert rows[0].variant == v.variant_id and rows[0].wbits == 4 and rows[0].group_size == 32
    assert json.loads(store.frame("measurements")["extra_json"][0])["config"]["hidden_size"] == 64


def test_cpu_time_clock_counts_work_not_waiting():
    from codesign.cost.timers import CpuTimeTimer

    t = timer_for("cpu", clock="cpu")
    assert isinstance(t, CpuTimeTimer)
    t.start()
    time.sleep(0.05)  # waiting is not work
    assert t.stop() < 25.0
    t.start()
    end = time.perf_counter() + 0.05
    while time.perf_counter() < end:  # spinning is
        pass
    assert t.stop() > 10.0
    with pytest.raises(ConfigError, match="--clock: 'gpu'"):
        timer_for("cpu", clock="gpu")
    with pytest.raises(ConfigError, match="needs --clock wall"):
        timer_for("cuda", clock="cpu")


def test_cpu_clock_needs_one_thread():
    import torch

    n = torch.get_num_threads()
    try:
        if n > 1:
            with pytest.raises(ConfigError, match="--threads 1"):
                measure("tiny-llama", [WeightFormat("dense")], clock="cpu", progress=False)
        rows = measure("tiny-llama", [WeightFormat("dense")], clock="cpu", threads=1, batches=[1], prompt_lens=[8],
                       gen_len=2, repeats=1, progress=False)
        assert rows[0].extra["clock"] == "cpu" and rows[0].tpot_ms > 0
        assert rows[0].versions["threads"] == 1
    finally:
        torch.set_num_threads(n)
