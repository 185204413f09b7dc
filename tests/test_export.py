"""codesign export: serving checkpoints (AutoGPTQ / AutoAWQ-GEMM) that import back to the exact
weights, ensembles with their voting manifest, README provenance and scores, and bad input that
fails before anything is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from codesign.config import ConfigError
from codesign.records import VariantSpec

CALIB = (("n_samples", 4), ("seq_len", 32))


def _spec(method, bits, group_size, sym, **opts):
    extra = tuple(sorted({**dict(CALIB), **opts}.items())) if method != "rtn" else ()
    return VariantSpec("tiny-llama", method, bits, group_size, sym, calib="default" if method != "rtn" else "none",
                       extra=extra)


def _made(spec):
    from codesign.quantize.variant import quantize_variant

    return quantize_variant(spec, progress=False)


def _state(lm):
    return {k: v.detach().clone() for k, v in lm.model.state_dict().items()}


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "codesign", *args], capture_output=True, text=True,
                          env=env or dict(os.environ), timeout=600)


# -- round trip: export -> codesign quantize --import -> the same dequantized weights ---------------------
@pytest.mark.parametrize("spec,fmt", [
    (_spec("rtn", 4, 32, True), "gptq"),
    (_spec("rtn", 8, -1, True), "gptq"),
    (_spec("rtn", 2, 16, False), "gptq_v2"),
    (_spec("gptq", 3, 32, True, group_aware=False), "gptq"),  # free act-order: permuted g_idx
    (_spec("awq", 4, 64, False), "awq"),
    (_spec("rtn", 4, 32, True), "awq"),
], ids=lambda x: x.short_name if isinstance(x, VariantSpec) else x)
def test_export_imports_back_to_identical_weights(tmp_path, spec, fmt):
    from codesign.export import export_target
    from codesign.quantize import import_checkpoint, load_variant

    _made(spec)
    res = export_target(spec.variant_id, fmt, tmp_path / "out", progress=False)
    folder = res.folders[spec.variant_id]
    qc = json.loads((folder / "config.json").read_text())["quantization_config"]
    assert qc["bits"] == spec.bits and qc["group_size"] == spec.group_size
    if fmt != "awq":
        assert qc["checkpoint_format"] == fmt and qc["desc_act"] == (spec.method == "gptq")  # g_idx permuted
    else:
        assert qc["version"] == "gemm" and qc["zero_point"] == (not spec.sym)
    assert (folder / "tokenizer.json").exists() and (folder / "README.md").exists()

    imported, entry = import_checkpoint(folder, root=tmp_path / "imported")
    assert imported.bits == spec.bits and imported.group_size == spec.group_size
    ours, back = _state(load_variant(spec, progress=False)), _state(load_variant(imported, path=entry))
    quantized = set(json.loads((folder / "codesign_variant.json").read_text())["linears"])
    assert set(ours) == set(back)
    for k, v in ours.items():
        if k.rsplit(".", 1)[0] in quantized and k.endswith(".weight"):
            assert torch.equal(back[k], v), k  # dequantized weights: bit-identical
        else:
            assert torch.equal(back[k], v.half().float()), k  # float tensors, exported as float16


def test_import_cli_reads_an_export(tmp_path):
    from codesign.export import export_target

    spec = _spec("rtn", 4, 32, False)
    _made(spec)
    export_target(spec.variant_id, "gptq_v2", tmp_path / "out", progress=False)
    r = _cli("quantize", "--import", str(tmp_path / "out"), "--out", str(tmp_path / "imp"))
    assert r.returncode == 0, r.stderr
    rec = json.loads(next((tmp_path / "imp").glob("*/variant.json")).read_text())
    assert rec["imported_from"] == "autogptq" and rec["quantize_config"]["checkpoint_format"] == "gptq_v2"


# -- what each format can hold -------------------------------------------------------------------------
def test_format_checks_name_what_does_not_fit():
    from codesign.export.formats import get_format

    awq, gptq = get_format("awq"), get_format("gptq")
    assert any("bits=3" in p and "[4]" in p for p in awq.spec_problems(_spec("rtn", 3, 32, False)))
    assert any("group_size=16" in p for p in awq.spec_problems(_spec("rtn", 4, 16, False)))
    assert any("act-order" in p for p in awq.spec_problems(_spec("gptq", 4, 32, False, group_aware=False)))
    assert not awq.spec_problems(_spec("gptq", 4, 32, False))  # group-aware order keeps groups contiguous
    assert not awq.spec_problems(_spec("gptq", 4, 32, False, act_order=False, group_aware=False))
    assert any("bits=5" in p for p in gptq.spec_problems(_spec("rtn", 5, 32, False)))
    assert not gptq.spec_problems(_spec("gptq", 3, 128, False))
    with pytest.raises(ConfigError, match="not an export format.*gptq_v2"):
        get_format("exl2")


def test_v1_layout_refuses_zero_point_zero_and_awq_refuses_permuted_groups():
    from codesign.quantize.formats import autoawq, autogptq
    from codesign.quantize.grid import QuantizedWeight, contiguous_g_idx

    q = torch.randint(0, 16, (32, 64), dtype=torch.int32)
    zeros = torch.full((2, 32), 3, dtype=torch.int32)
    qw = QuantizedWeight(q, torch.ones(2, 32), zeros, contiguous_g_idx(64, 32), 4, 32, False)
    assert not autogptq.writable_problems({"l": qw}, "gptq")
    zeros[0, 5] = 0
    assert "zero point 0" in autogptq.writable_problems({"l": qw}, "gptq")[0]
    assert not autogptq.writable_problems({"l": qw}, "gptq_v2")
    perm = QuantizedWeight(q, torch.ones(2, 32), zeros, contiguous_g_idx(64, 32).flip(0), 4, 32, False)
    assert "act-order" in autoawq.writable_problems({"l": perm})[0]
    wide = QuantizedWeight(torch.zeros(32, 96, dtype=torch.int32), torch.ones(2, 32), torch.ones(2, 32, dtype=torch.int32),
                           contiguous_g_idx(96, 64), 4, 64, False)
    assert "not a multiple of group_size 64" in autoawq.writable_problems({"l": wide})[0]
    assert not autogptq.writable_problems({"l": wide})  # a short last group: GPTQ stores g_idx


def test_grid_only_weights_leave_the_integers_packed():
    from codesign.quantize.grid import QuantizedWeight, contiguous_g_idx

    q = QuantizedWeight(torch.randint(0, 8, (32, 64), dtype=torch.int32), torch.rand(2, 32),
                        torch.randint(0, 8, (2, 32), dtype=torch.int32), contiguous_g_idx(64, 32), 3, 32, False)
    t = q.to_tensors("l")
    grid = QuantizedWeight.from_tensors(t, "l", 3, 32, False, ints=False)
    full = QuantizedWeight.from_tensors(t, "l", 3, 32, False)
    assert grid.shape == full.shape == (32, 64) and grid.qint.stride() == (0, 0)
    assert torch.equal(grid.zeros, full.zeros) and torch.equal(grid.g_idx, full.g_idx)
    assert torch.equal(full.qint, q.qint)


# -- ensembles, store scores, README --------------------------------------------------------------------
def test_ensemble_export_writes_members_manifest_and_scores(tmp_path, data_dir):
    from codesign.explore.synthetic import fill_synthetic_store
    from codesign.store import ResultStore

    specs = [_spec("rtn", 4, 32, True), _spec("rtn", 8, 32, True), VariantSpec("tiny-llama")]
    for s in specs[:2]:
        _made(s)
    with ResultStore(tmp_path / "r.db") as st:
        for s in specs:
            st.add_variant(s)
        fill_synthetic_store(st, specs, ["ethics", "ood"], data_dir=data_dir, limit=40)
    before = (tmp_path / "r.db").read_bytes()
    r = _cli("export", "rtn-w4g32-sym+rtn-w8g32-sym+dense", "--format", "gptq", "--out", str(tmp_path / "ens"),
             "--store", str(tmp_path / "r.db"), "--n-boot", "50")
    assert r.returncode == 0, r.stderr
    man = json.loads((tmp_path / "ens" / "ensemble.json").read_text())
    assert [m["bits"] for m in man["members"]] == [4, 8, 16]
    assert man["rule"]["tie_order"] == [specs[2].variant_id, specs[1].variant_id, specs[0].variant_id]
    keep = man["rule"]["refusal_is_label"]  # per protocol of the stored answers (the default one here)
    assert list(keep) == ["decodingtrust"] and list(keep["decodingtrust"]) == ["ood"]
    assert keep["decodingtrust"]["ood"] and all(s.startswith("knowledge/") for s in keep["decodingtrust"]["ood"])
    assert any("REFUSED if some member refused, else INVALID" in step for step in man["rule"]["steps"])
    assert [m["format"] for m in man["members"]] == ["gptq", "gptq", "float"]
    for m in man["members"]:
        assert (tmp_path / "ens" / m["folder"] / "model.safetensors").exists()
    dense_cfg = json.loads((tmp_path / "ens" / "dense" / "config.json").read_text())
    assert "quantization_config" not in dense_cfg
    readme = (tmp_path / "ens" / "README.md").read_text()
    assert "Machine ethics" in readme and "vs best member" in readme and "vllm serve" in readme
    member_readme = (tmp_path / "ens" / "rtn-w4g32-sym" / "README.md").read_text()
    assert "| ethics |" in member_readme and "95% CI" in member_readme
    assert (tmp_path / "r.db").read_bytes() == before  # the store is only read
    from codesign.export import export_target

    with pytest.raises(ConfigError, match="^export: 'nope' matches no variant"):
        export_target("rtn-w4g32-sym+nope", "gptq", tmp_path / "x", store=tmp_path / "r.db")


def test_scores_and_refusal_labels_follow_the_stores_protocol(tmp_path, data_dir):
    """A store holding codesign-protocol answers only: the card scores those, the manifest's
    refusal labels are the codesign OOD task's."""
    from codesign.export import card, refusal_subtasks
    from codesign.explore.synthetic import fill_synthetic_store
    from codesign.store import ResultStore

    specs = [_spec("rtn", 4, 32, True), VariantSpec("tiny-llama")]
    with ResultStore(tmp_path / "r.db") as st:
        fill_synthetic_store(st, specs, ["ethics", "ood"], data_dir=data_dir, limit=20, protocol="codesign")
    keep = refusal_subtasks(tmp_path / "r.db")
    assert list(keep) == ["codesign"] and list(keep["codesign"]) == ["ood"]
    assert keep["codesign"]["ood"] and all(s.startswith("knowledge") and "/" not in s for s in keep["codesign"]["ood"])
    frame, note = card.trust_scores(tmp_path / "r.db", [s.variant_id for s in specs], n_boot=0)
    assert note.startswith("Answers: codesign protocol (answered policy)") and list(frame["task"]) == ["ethics", "ood"]


# -- bad input: one error line, exit 2, nothing written ------------------------------------------------
@pytest.fixture(scope="module")
def variants_dir(tmp_path_factory):
    """A variant cache of its own, so short names are unambiguous whatever else the session made."""
    from codesign.quantize.variant import quantize_variant

    root = tmp_path_factory.mktemp("variants")
    for s in (_spec("rtn", 3, 32, False), _spec("rtn", 4, 32, False)):
        quantize_variant(s, out=root, progress=False)
    return root


@pytest.mark.parametrize("target,fmt,msg", [
    ("nope-w4", "gptq", "'nope-w4' matches no variant"),
    ("rtn-w4g32", "marlin", "'marlin' is not an export format"),
    ("dense", "gptq", "'dense' stands for the unquantized model"),
    ("rtn-w4g32+rtn-w4g32", "gptq", "more than once"),
    ("vote(rtn-w3g32+rtn-w4g32)", "awq", "cannot hold rtn-w3g32"),
])
def test_bad_targets_fail_before_writing(tmp_path, variants_dir, target, fmt, msg):
    from codesign.export import export_target

    with pytest.raises(ConfigError, match=msg.replace("(", r"\(")):
        export_target(target, fmt, tmp_path / "out", root=variants_dir, progress=False)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp-*"))


def test_cli_bad_format_is_one_error_line(tmp_path, variants_dir):
    r = _cli("export", "rtn-w3g32", "--format", "awq", "--out", str(tmp_path / "out"), "--variants", str(variants_dir))
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: --format awq cannot hold"), r.stderr
    assert "bits=3 (allowed in awq: [4]); formats that fit: ['gptq', 'gptq_v2']" in lines[0]
    assert not (tmp_path / "out").exists()


def test_cli_non_empty_out_needs_force(tmp_path, variants_dir):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    args = ("export", "rtn-w4g32", "--format", "gptq", "--out", str(out), "--variants", str(variants_dir))
    r = _cli(*args)
    assert r.returncode == 2 and "is not empty" in r.stderr and "--force" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    r = _cli(*args, "--force")
    assert r.returncode == 0, r.stderr
    assert (out / "model.safetensors").exists() and not (out / "keep.txt").exists()


def test_zero_point_zero_asks_for_v2_before_writing(tmp_path):
    """A grid with a zero point of 0 cannot go into the v1 layout: the error names gptq_v2."""
    from codesign.export import export_target
    from codesign.quantize import cache

    spec = _spec("rtn", 4, 32, False)
    tensors, record = cache.read_entry(_made(spec))
    broken = VariantSpec("tiny-llama", "rtn", 4, 32, False, seed=7)
    name = next(iter(record["linears"]))
    tensors[f"{name}.qzeros_u8"][0, 0] = 0
    record = {k: v for k, v in record.items() if k not in ("variant_id", "format", "created")}
    cache.write_entry(broken.variant_id, tensors, {**record, "spec": broken.to_dict()})
    with pytest.raises(ConfigError, match="zero point 0.*gptq_v2"):
        export_target(broken.variant_id, "gptq", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    export_target(broken.variant_id, "gptq_v2", tmp_path / "out", progress=False)


# -- GPTQModel loads the export on CPU (runs where the gptqmodel extra is installed) ----------------------
@pytest.mark.parametrize("spec,fmt", [(_spec("rtn", 4, 32, True), "gptq"), (_spec("rtn", 4, 32, False), "gptq_v2"),
                                      (_spec("rtn", 4, 32, False), "awq")], ids=["gptq-sym", "gptq_v2-asym", "awq"])
def test_gptqmodel_loads_export_with_same_logits(tmp_path, spec, fmt):
    pytest.importorskip("gptqmodel")
    from gptqmodel import BACKEND, GPTQModel

    from codesign.export import export_target
    from codesign.quantize import load_variant

    _made(spec)
    export_target(spec.variant_id, fmt, tmp_path / "out", progress=False)
    ids = torch.tensor([[1, 5, 9, 33, 70, 100, 7, 250]])
    with torch.no_grad():
        ref = load_variant(spec, progress=False).model(ids).logits.float()
        backend = BACKEND.AWQ_TORCH if fmt == "awq" else BACKEND.TORCH
        got = GPTQModel.load(str(tmp_path / "out"), device="cpu", backend=backend,
                             dtype=torch.float16).model(ids).logits.float()
    # GPTQModel runs in float16: agreement to float16 accuracy, and the same next-token choices
    assert (got - ref).abs().max() <= 1e-2 * ref.abs().max()
    assert torch.equal(got.argmax(-1), ref.argmax(-1))
