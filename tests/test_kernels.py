"""Kernels of quantized linears: every kernel against the dequantized reference within its stated
tolerance, per weight format (CPU kernels here; CUDA kernels where a GPU is present), selection by
device/dtype/format, act-order, the tinygemm packing contract, and whole models on kernels."""

import pytest
import torch

from codesign.config import ConfigError
from codesign.quantize.grid import QuantizedWeight
from codesign.quantize.kernels import (DENSE_KERNEL, WeightLayout, get_kernel, kernel_names, pack_model,
                                       select_kernel)
from codesign.quantize.rtn import rtn_quantize

CPU_KERNELS = ["aten-int4pack-cpu", "aten-int8pack-cpu", "aten-int8pack-grouped-cpu", "aten-int4pack-x2-cpu",
               "dequant-matmul"]
CUDA_KERNELS = ["aten-int4pack-cuda", "marlin-gptqmodel"]
# (out, in): 576 = 4 x 128 + 64 (SmolLM2's width: a shorter last group at g128); 1024 for Marlin's tiles
SHAPES = [(96, 256), (64, 576), (128, 1024)]
FORMATS = [(4, 128, False), (4, 32, True), (4, -1, False), (8, 128, False), (8, 64, True), (8, -1, False),
           (8, -1, True), (3, 128, False), (2, 64, False), (6, 32, True)]


def _act_order(qw: QuantizedWeight, seed: int = 0) -> QuantizedWeight:
    """The same weight with its columns' groups permuted, as GPTQ's act-order stores it."""
    perm = torch.randperm(qw.shape[1], generator=torch.Generator().manual_seed(seed))
    return QuantizedWeight(qw.qint, qw.scales, qw.zeros, qw.g_idx[perm].contiguous(), qw.bits, qw.group_size,
                           qw.sym)


def _check(kernel: str, qw: QuantizedWeight, dtype, device="cpu", bias=None) -> float | None:
    """Relative max error of ``kernel`` against x @ Ŵᵀ (+ b) in float32; None when it cannot run ``qw``."""
    cls = get_kernel(kernel)
    if cls.unsupported(WeightLayout.of(qw), dtype, device) is not None:
        return None
    mod = cls.from_quantized(qw, bias, dtype=dtype, device=device)
    x = torch.randn(2, 3, qw.shape[1], generator=torch.Generator().manual_seed(1)).to(device, dtype)
    ref = x.float() @ qw.dequantize(torch.float32).to(device).T + (0 if bias is None else bias.to(device).float())
    with torch.no_grad():
        y = mod(x)
    assert y.shape == (2, 3, qw.shape[0]) and y.dtype == dtype
    err = float((y.float() - ref).abs().max() / ref.abs().max())
    assert err <= cls.tolerance(dtype), f"{kernel} {WeightLayout.of(qw).name} {dtype}: {err:.2e}"
    return err


@pytest.mark.parametrize("kernel", CPU_KERNELS)
def test_cpu_kernel_matches_dequantized_reference(kernel):
    ran = 0
    for out, width in SHAPES[:2]:
        w = torch.randn(out, width, generator=torch.Generator().manual_seed(out)) * 0.02
        for bits, group, sym in FORMATS:
            qw = rtn_quantize(w, bits, group, sym)
            for dtype in (torch.bfloat16, torch.float32):
                for q in (qw, _act_order(qw)):
                    ran += _check(kernel, q, dtype) is not None
    assert ran >= 4  # every CPU kernel runs some formats in both dtypes, act-order included
    bias = torch.randn(96)
    _check(kernel if kernel != "aten-int8pack-cpu" else "dequant-matmul",
           rtn_quantize(torch.randn(96, 256), 4 if "int4pack-cpu" in kernel else 8, 128, False), torch.bfloat16,
           bias=bias)


def test_each_cpu_kernel_runs_what_it_says():
    lay = lambda bits, group, width=4096: WeightLayout(bits, group, False, width, 4096)  # noqa: E731
    bf16 = torch.bfloat16
    assert get_kernel("aten-int4pack-cpu").unsupported(lay(4, 128), bf16, "cpu") is None
    assert get_kernel("aten-int4pack-cpu").unsupported(lay(4, -1), bf16, "cpu") is None  # repeated per 256
    assert "group size" in get_kernel("aten-int4pack-cpu").unsupported(lay(4, 16, 4096), bf16, "cpu")
    assert "one scale per output channel" in get_kernel("aten-int8pack-cpu").unsupported(lay(8, 128), bf16, "cpu")
    assert get_kernel("aten-int8pack-cpu").unsupported(lay(8, -1), bf16, "cpu") is None
    for k in ("aten-int4pack-cpu", "aten-int8pack-grouped-cpu"):
        assert "-bit" in get_kernel(k).unsupported(lay(3, 128), bf16, "cpu")  # no 3-bit kernel pretends
    assert "runs on cuda" in get_kernel("aten-int4pack-cuda").unsupported(lay(4, 128), bf16, "cpu")
    assert "runs on cuda" in get_kernel("marlin-gptqmodel").unsupported(lay(4, 128), bf16, "cpu")
    with pytest.raises(ConfigError, match=r"--kernel: 'int3-magic'.*allowed: auto, aten-int4pack-cpu"):
        get_kernel("int3-magic")
    assert kernel_names()[-1] == "dequant-matmul" and DENSE_KERNEL == "torch-matmul"


def test_auto_selection_by_device_dtype_and_format():
    bf16, f32 = torch.bfloat16, torch.float32
    pick = lambda bits, group, dtype=bf16, device="cpu", sym=False: select_kernel(  # noqa: E731
        WeightLayout(bits, group, sym, 4096, 11008), device, dtype)
    assert pick(4, 128)[0].name == "aten-int4pack-cpu" and pick(4, 128)[1] is None
    assert pick(8, 128)[0].name == "aten-int4pack-x2-cpu"  # never re-quantized to per-channel
    assert pick(8, -1)[0].name == "aten-int8pack-cpu"
    k, why = pick(3, 128)
    assert k.name == "dequant-matmul" and why is None  # no kernel claims 3 bits: nothing was passed over
    assert pick(4, 128, f32)[0].name == "aten-int4pack-cpu"  # a scalar loop in float32, still faster than dequant
    k, why = pick(4, 128, torch.float16, "cuda")
    assert k.name == "dequant-matmul" and "bfloat16 activations, not float16" in why  # tinygemm is bf16-only
    k, why = select_kernel(WeightLayout(4, 128, False, 4096, 4096), "cpu", bf16, "aten-int8pack-cpu")
    assert k.name == "aten-int4pack-cpu" and "8-bit weights, not 4-bit" in why  # forced elsewhere: auto, says why
    k, why = select_kernel(WeightLayout(8, 128, False, 4096, 4096), "cpu", bf16, "aten-int8pack-grouped-cpu")
    assert k.name == "aten-int8pack-grouped-cpu" and why is None


def test_tinygemm_packing_contract_without_a_gpu():
    # torch's meta kernels check the documented signature: (out, in/2) uint8 in, tiled int32 out,
    # and the matmul's output shape; the numbers themselves need a GPU (see the CUDA test).
    from torch._subclasses.fake_tensor import FakeTensorMode

    qw = rtn_quantize(torch.randn(64, 256), 4, 128, False)
    cls = get_kernel("aten-int4pack-cuda")
    mod = cls.from_quantized(qw, dtype=torch.bfloat16, device="meta")
    assert mod.packed.dtype == torch.int32 and mod.packed.shape == (64 // 8, 256 // (16 * 8), 32, 4)
    assert mod.scales_zeros.shape == (2, 64, 2) and mod.scales_zeros.dtype == torch.bfloat16
    with FakeTensorMode(allow_non_fake_inputs=True):
        assert mod(torch.empty(3, 256, dtype=torch.bfloat16, device="meta")).shape == (3, 64)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA kernels need a GPU")
@pytest.mark.parametrize("kernel", CUDA_KERNELS)
def test_cuda_kernel_matches_dequantized_reference(kernel):
    ran = 0
    for out, width in SHAPES:
        w = torch.randn(out, width, generator=torch.Generator().manual_seed(out)) * 0.02
        for bits, group, sym in FORMATS:
            qw = rtn_quantize(w, bits, group, sym)
            for dtype in (torch.bfloat16, torch.float16):
                for q in (qw, _act_order(qw)):
                    ran += _check(kernel, q, dtype, device="cuda") is not None
    if kernel == "marlin-gptqmodel" and not ran:
        pytest.skip("GPTQModel's Marlin is not installed")
    assert ran


def test_pack_model_runs_a_stored_variant_on_kernels(tiny_llama):
    from codesign.quantize import load_variant
    from codesign.records import VariantSpec

    x = torch.randint(0, 250, (2, 12))
    outs = {}
    for bits in (4, 8, 3):
        spec = VariantSpec("tiny-llama", "rtn", bits, 32)
        ref = load_variant(spec, dtype="bfloat16", packed=True, progress=False).model
        fast = load_variant(spec, dtype="bfloat16", packed=True, progress=False).model
        plan = pack_model(fast, device="cpu", dtype=torch.bfloat16)
        assert len(plan.kernels) == 14
        with torch.no_grad():
            a, b = ref(x).logits.float(), fast(x).logits.float()
        assert (a - b).abs().max() <= 0.05 * a.abs().max()
        outs[bits] = plan.label
    assert outs == {4: "aten-int4pack-cpu", 8: "aten-int4pack-x2-cpu", 3: "dequant-matmul"}


def test_replace_linears_on_a_forced_kernel():
    from codesign.models import load_model
    from codesign.quantize import replace_linears

    m = load_model("tiny-llama", dtype="bfloat16").model
    plan = replace_linears(m, 8, 32, kernel="aten-int8pack-grouped-cpu")
    assert plan.label == "aten-int8pack-grouped-cpu" and plan.counts == {"aten-int8pack-grouped-cpu": 14}
    assert type(m.model.layers[0].mlp.down_proj).name == "aten-int8pack-grouped-cpu"
    assert isinstance(m.lm_head, torch.nn.Linear)  # the lm head stays dense


def test_eval_packed_runs_variants_on_kernels(store, data_dir):
    from codesign.evaluate import evaluate_catalogue
    from codesign.evaluate.runner import load_for_eval
    from codesign.records import VariantSpec

    spec = VariantSpec("tiny-llama", "rtn", 4, 32)
    kinds = {type(m).name for m in load_for_eval(spec, "cpu", "bfloat16", packed=True).model.modules()
             if hasattr(type(m), "op")}
    assert kinds == {"aten-int4pack-cpu"}
    res = evaluate_catalogue([spec], store, ["advglue"], limit=4, data_dir=data_dir, batch_size=4, progress=False,
                             device="cpu", dtype="bfloat16", packed=True)
    assert res[spec.variant_id]["advglue"]["n"] == 4 and len(store.frame("outputs")) == 4


@pytest.mark.parametrize("kernel", ["aten-int4pack-cpu", "aten-int4pack-x2-cpu", "aten-int8pack-grouped-cpu"])
def test_prefill_on_a_dequantized_copy_decode_on_the_kernel(kernel):
    bits = 4 if kernel == "aten-int4pack-cpu" else 8
    qw = _act_order(rtn_quantize(torch.randn(96, 256, generator=torch.Generator().manual_seed(3)), bits, 64, False))
    cls = get_kernel(kernel)
    assert cls.copies_for_prefill()  # auto keeps a dense copy for prefill on torch's CPU GEMV ops
    mod = cls.from_quantized(qw, torch.randn(96), dtype=torch.bfloat16, prefill="auto")
    plain = cls.from_quantized(qw, dtype=torch.bfloat16, prefill="packed")
    assert mod.prefill_kernel == DENSE_KERNEL and plain.prefill_kernel == kernel and plain.prefill_weight is None
    # the copy is Ŵ in the original column order (act-order permutes only the kernel's buffers)
    assert torch.equal(mod.prefill_weight, qw.dequantize(torch.float32).to(torch.bfloat16))
    ref = qw.dequantize(torch.float32)
    for shape in ((2, 5, 256), (2, 1, 256), (5, 256)):  # prefill, decode step, 2-D (the kernel)
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(4)).bfloat16()
        with torch.no_grad():
            y = mod(x)
        want = x.float() @ ref.T + mod.bias.float()
        assert y.shape == (*shape[:-1], 96)
        assert float((y.float() - want).abs().max() / want.abs().max()) <= cls.tolerance(torch.bfloat16)
    # which path ran: poison the copy; only the prefill call (several positions) sees it
    mod.prefill_weight.zero_()
    with torch.no_grad():
        assert mod(torch.ones(1, 3, 256, dtype=torch.bfloat16)).float().sub(mod.bias.float()).abs().max() == 0
        assert mod(torch.ones(1, 1, 256, dtype=torch.bfloat16)).float().sub(mod.bias.float()).abs().max() > 0
    with pytest.raises(ConfigError, match="--prefill: 'fast'.*auto, packed, dequantized"):
        cls.from_quantized(qw, dtype=torch.bfloat16, prefill="fast")


def test_dequantize_fast_matches_the_reference():
    from codesign.quantize.kernels.base import dequantize_fast

    w = torch.randn(130, 576, generator=torch.Generator().manual_seed(5))
    for bits, group in ((4, 128), (8, 64), (3, -1), (4, 96)):
        qw = rtn_quantize(w, bits, group, False)
        for dtype in (torch.float32, torch.bfloat16):
            assert torch.equal(dequantize_fast(qw, WeightLayout.of(qw), dtype), qw.dequantize(dtype))
