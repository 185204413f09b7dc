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
    b = build_model("random:smollm2-135m", WeightFormat("dense"), layers=1)
    m, cfg = b.model, b.config
    assert b.kernel == "torch-matmul" and b.weight_bytes == sum(p.numel() * 4 for p in m.parameters()) + sum(
        t.numel() * t.element_size() for t in m.buffers())
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
    # With a cache a decode step feeds one new token per sequence; without, it would re-run the
    # prompt. Checked on what the model is fed, not on timings (a shared box makes those flaky).
    calls = []
    handle = tiny_llama.model.register_forward_pre_hook(
        lambda mod, args, kw: calls.append(tuple(kw["input_ids"].shape)), with_kwargs=True)
    try:
        time_generation(tiny_llama.model, batch=4, prompt_len=64, gen_len=4, repeats=1, warmup=0)
    finally:
        handle.remove()
    assert calls == [(4, 64)] + [(4, 1)] * 4


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
    b = build_model("tiny-llama", parse_weight_format("w3g32"))  # no 3-bit kernel: dequantize per call
    assert any(isinstance(x, qlinear.QuantLinear) for x in b.model.modules()) and b.kernel == "dequant-matmul"
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
    from pathlib import Path

    from codesign.cost.timers import cpu_busy_fraction, wait_for_quiet

    busy = cpu_busy_fraction(0.05)
    if not Path("/proc/stat").exists():  # the only platform where it may be unknown
        assert busy is None and wait_for_quiet(0.0, timeout_s=0.0) is None
    else:
        assert isinstance(busy, float) and 0.0 <= busy <= 1.0
        # never quiet enough: returns the last sample once the (zero) deadline passed, instead of waiting
        last = wait_for_quiet(0.0, timeout_s=0.0, interval_s=0.05)
        assert isinstance(last, float) and 0.0 <= last <= 1.0
        # always quiet enough: returns the first sample, which is at most the threshold
        first = wait_for_quiet(1.0, timeout_s=60.0, interval_s=0.05)
        assert isinstance(first, float) and first <= 1.0
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
    # the timer reads this process's CPU clock: spinning until that clock advanced 30 ms shows as
    # 30 ms whatever the load on the machine (no wall-clock threshold)
    t.start()
    c0 = time.process_time()
    while time.process_time() - c0 < 0.03:
        pass
    spun = t.stop()
    assert spun >= 30.0
    t.start()
    time.sleep(0.05)  # waiting is not work: far less CPU time than the spin
    assert t.stop() < spun
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


# -- kernels, specs, ensembles, per-variant memory, restored settings ------------------------------
def test_rows_name_the_kernel_that_ran_and_the_spec(store):
    fmts = [parse_weight_format(v) for v in ("dense", "w4g32", "w8g32", "w3g32")]
    rows = measure("tiny-llama", fmts, dtypes=["bfloat16"], batches=[1], prompt_lens=[8], gen_len=2, repeats=1,
                   store=store, progress=False)
    assert [r.kernel for r in rows] == ["torch-matmul", "aten-int4pack-cpu", "aten-int4pack-x2-cpu",
                                        "dequant-matmul"]  # no 3-bit kernel: the row says what ran
    assert {r.spec for r in rows} == {"dev-cpu"}  # no probed host-cpu spec in the test cache
    assert rows[1].extra["kernel_counts"] == {"aten-int4pack-cpu": 14} and rows[1].extra["lm_head_kernel"]
    # per phase: torch's CPU GEMV ops decode; prefill runs a dense GEMM on a dequantized copy (its bytes counted)
    assert [(r.extra["prefill_kernel"], r.extra["decode_kernel"]) for r in rows] == [
        ("torch-matmul", "torch-matmul"), ("torch-matmul", "aten-int4pack-cpu"),
        ("torch-matmul", "aten-int4pack-x2-cpu"), ("dequant-matmul", "dequant-matmul")]
    assert rows[1].extra["prefill_copy_bytes"] > 0 == rows[0].extra["prefill_copy_bytes"] == rows[3].extra[
        "prefill_copy_bytes"]
    packed = measure("tiny-llama", fmts[1:2], dtypes=["bfloat16"], batches=[1], prompt_lens=[8], gen_len=2,
                     repeats=1, store=store, progress=False, prefill="packed")  # not "already measured"
    assert packed[0].extra["prefill_kernel"] == "aten-int4pack-cpu" and packed[0].extra["prefill_copy_bytes"] == 0
    with pytest.raises(ConfigError, match="--prefill: 'gemm'"):
        measure("tiny-llama", fmts[:1], prefill="gemm", progress=False)
    stored = store.measurements()
    assert [m.kernel for m in stored][:4] == [r.kernel for r in rows] and stored[2].schedule == "single"
    forced = measure("tiny-llama", fmts[2:3], dtypes=["bfloat16"], batches=[1], prompt_lens=[8], gen_len=2,
                     repeats=1, store=store, progress=False, kernel="aten-int8pack-grouped-cpu", spec="h100-sxm")
    assert forced[0].kernel == "aten-int8pack-grouped-cpu" and forced[0].spec == "h100-sxm"  # not "already measured"
    with pytest.raises(ConfigError, match="unknown accelerator spec 'tpu-v9'"):
        measure("tiny-llama", fmts[:1], spec="tpu-v9", progress=False)


def test_default_spec_by_device():
    from codesign.cost.measure import default_spec
    from codesign.cost.probe import default_spec_path, write_spec

    assert default_spec("cuda:0", "NVIDIA H100 80GB HBM3") == "h100-sxm"
    assert default_spec("cuda", "NVIDIA A100-SXM4-80GB") == "a100-80gb" and default_spec("cuda", "NVIDIA L4") == "l4"
    assert default_spec("cuda", "NVIDIA GeForce RTX 4090") is None
    assert default_spec("cpu", "AMD EPYC") == "dev-cpu"
    path = write_spec({"name": "host-cpu"}, default_spec_path("host-cpu"))  # what `codesign probe` writes
    try:
        assert default_spec("cpu", "AMD EPYC") == "host-cpu"
    finally:
        path.unlink()


def test_ensemble_members_run_for_real_under_each_schedule(store):
    from codesign.cost.measure import parse_ensemble

    ens = parse_ensemble("8,4")
    assert [f.name for f in ens] == ["w4g128", "w8g128"]
    rows = measure("tiny-llama", ensembles=[ens], schedules=["sequential", "batched"], dtypes=["bfloat16"],
                   batches=[2], prompt_lens=[8], gen_len=3, repeats=1, store=store, progress=False)
    seq, bat = rows
    assert (seq.schedule, bat.schedule) == ("sequential", "batched") and seq.variant == "w4g128+w8g128"
    assert seq.kernel == "aten-int4pack-cpu+aten-int8pack-cpu" and seq.wbits is None
    members = seq.extra["members"]
    assert [m["variant"] for m in members] == ["w4g128", "w8g128"] and [m["wbits"] for m in members] == [4, 8]
    # sequential: the ensemble's times are its members' times, each measured in the same run
    assert seq.prefill_ms == pytest.approx(sum(m["prefill_ms"] for m in members))
    assert seq.tpot_ms == pytest.approx(sum(m["tpot_ms"] for m in members))
    assert "prefill_ms" not in bat.extra["members"][0]  # batched: one timer around the interleaved step
    assert bat.extra["weight_bytes"] == seq.extra["weight_bytes"] == sum(m["weight_bytes"] for m in members)
    assert [m.schedule for m in store.measurements()] == ["sequential", "batched"]
    again = measure("tiny-llama", ensembles=[ens], schedules=["batched"], dtypes=["bfloat16"], batches=[2],
                    prompt_lens=[8], gen_len=3, repeats=1, store=store, progress=False)
    assert again == []  # resumes per schedule
    with pytest.raises(ConfigError, match="--schedule.*allowed: sequential, batched"):
        measure("tiny-llama", ensembles=[ens], schedules=["parallel"], progress=False)
    with pytest.raises(ConfigError, match="two distinct members"):
        parse_ensemble("4,4")


def test_interleaved_schedule_steps_every_member(tiny_llama):
    from codesign.cost.measure import time_schedule

    calls = []
    handle = tiny_llama.model.register_forward_pre_hook(lambda mod, args, kw: calls.append(kw["input_ids"].shape[1]),
                                                        with_kwargs=True)
    try:
        time_schedule([tiny_llama.model, tiny_llama.model], "batched", batch=1, prompt_len=5, gen_len=3, repeats=1,
                      warmup=0)
        batched = list(calls)
        calls.clear()
        time_schedule([tiny_llama.model, tiny_llama.model], "sequential", batch=1, prompt_len=5, gen_len=3, repeats=1,
                      warmup=0)
    finally:
        handle.remove()
    assert batched == [5, 5, 1, 1, 1, 1, 1, 1]  # both prefills, then step by step across members
    assert calls == [5, 1, 1, 1, 5, 1, 1, 1]  # one member's whole generation after the other's


def test_old_store_without_kernel_columns_reads_and_resumes(tmp_path):
    import sqlite3

    from codesign.store import ResultStore

    db = tmp_path / "old.db"
    con = sqlite3.connect(db)  # the measurements table as stores before the kernel/spec/schedule columns had it
    con.execute("CREATE TABLE measurements (id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL, "
                "variant TEXT NOT NULL, wbits INTEGER, group_size INTEGER, dtype TEXT, device TEXT NOT NULL, "
                "device_name TEXT, batch INTEGER NOT NULL, prompt_len INTEGER NOT NULL, gen_len INTEGER NOT NULL, "
                "prefill_ms REAL, tpot_ms REAL, peak_mem_bytes INTEGER, repeats INTEGER, versions_json TEXT, "
                "extra_json TEXT, created REAL NOT NULL)")
    con.execute("INSERT INTO measurements VALUES (1,'tiny-llama','dense',32,NULL,'float32','cpu','x',1,8,2,1.0,2.0,"
                "3,1,'{}','{\"layers\": null}',0)")
    con.commit()
    con.close()
    with ResultStore(db) as st:
        old = st.measurements()
        assert len(old) == 1 and old[0].kernel is None and old[0].spec is None and old[0].schedule == "single"
        cols = {r[1] for r in st.conn.execute("PRAGMA table_info(measurements)")}
        assert "kernel" not in cols  # reading never writes
        rows = measure("tiny-llama", [WeightFormat("dense")], batches=[1, 2], prompt_lens=[8], gen_len=2, repeats=1,
                       store=st, progress=False)
        assert [r.batch for r in rows] == [2]  # the old row counts as measured
        assert [m.kernel for m in st.measurements()] == [None, "torch-matmul"]


def test_measure_restores_threads_and_peak_memory_is_per_variant(store):
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        rows = measure("random:smollm2-135m", [WeightFormat("dense")], dtypes=["float32", "bfloat16"], batches=[1],
                       prompt_lens=[8], gen_len=2, layers=2, repeats=1, store=store, threads=1, progress=False)
        assert torch.get_num_threads() == 2 and rows[0].extra["threads"] == 1
    finally:
        torch.set_num_threads(n)
    f32, bf16 = rows
    assert bf16.extra["weight_bytes"] < 0.55 * f32.extra["weight_bytes"]
    # measured after the float32 model was freed: a process-lifetime high-water mark could not go down
    assert bf16.peak_mem_bytes < f32.peak_mem_bytes - 0.5 * bf16.extra["weight_bytes"]


def test_sampled_peak_memory_where_the_high_water_mark_cannot_be_reset():
    import numpy as np

    mem = PeakMemory("cpu", method="sample")
    mem.reset()
    buf = np.ones(200 * 2**20 // 8)  # 200 MiB, touched
    time.sleep(0.05)
    del buf
    peak = mem.peak_bytes()
    assert mem.method == "sample" and mem.resettable
    mem.reset()
    assert peak - mem.peak_bytes() > 150 * 2**20  # the next region does not inherit the peak


def test_probe_keeps_no_module_state_and_restores_threads():
    import torch

    from codesign.cost import probe as probe_mod

    assert not [k for k, v in vars(probe_mod).items() if k.isupper() and isinstance(v, dict) and "clock" in v]
    n = torch.get_num_threads()
    res = probe_mod.probe(dtypes=["fp32"], quick=True, threads=1, clock="cpu", progress=False)
    assert res.threads == 1 and res.details["clock"] == "cpu" and torch.get_num_threads() == n


def test_cli_ensemble_kernel_and_spec(tmp_path):
    db = tmp_path / "m.db"
    r = _cli("measure", "--model", "tiny-llama", "--ensemble", "4,8", "--schedule", "sequential,batched", "--dtype",
             "bfloat16", "--batch", "1", "--prompt-len", "8", "--gen-len", "2", "--repeats", "1", "--store", str(db))
    assert r.returncode == 0, r.stderr
    assert "(batched)" in r.stdout and "w4g128+w8g128: aten-int4pack-cpu+aten-int8pack-cpu" in r.stdout
    assert max(len(line) for line in r.stdout.splitlines()[:-1]) <= 80, r.stdout  # the table reads at 80 columns
    bad = _cli("measure", "--model", "tiny-llama", "--kernel", "int3-magic", "--store", str(db))
    assert bad.returncode == 2 and "--kernel: 'int3-magic'" in bad.stderr and "dequant-matmul" in bad.stderr
    bad = _cli("measure", "--model", "tiny-llama", "--ensemble", "4,8", "--schedule", "sliced", "--store", str(db))
    assert bad.returncode == 2 and "--schedule" in bad.stderr and "sequential, batched" in bad.stderr
    bad = _cli("measure", "--model", "tiny-llama", "--spec", "tpu-v9", "--store", str(db))
    assert bad.returncode == 2 and "tpu-v9" in bad.stderr
