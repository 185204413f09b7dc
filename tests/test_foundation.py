import json
import subprocess
import sys

import pytest
from pydantic import Field

from codesign.config import ConfigError, StrictModel, load_config, parse_int_list
from codesign.records import INVALID, REFUSED, VariantSpec
from codesign.store import ItemRow, OutputRow, ResultStore


class _Cfg(StrictModel):
    name: str
    bandwidth_gbs: float = Field(gt=0)


def test_config_error_names_file_field_value(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: x\nbandwidth_gbs: -3\n")
    with pytest.raises(ConfigError) as e:
        load_config(_Cfg, p)
    msg = str(e.value)
    assert "bad.yaml" in msg and "bandwidth_gbs" in msg and "-3" in msg and "> 0" in msg


def test_config_error_unknown_key_and_not_yaml(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\nbandwidth_gbs: 1\nbandwith: 2\n")
    with pytest.raises(ConfigError, match="bandwith"):
        load_config(_Cfg, p)
    p.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_Cfg, p)


def test_parse_int_list():
    assert parse_int_list("3, 4,8", name="ensemble") == [3, 4, 8]
    with pytest.raises(ConfigError, match="--bits: 9 is not allowed"):
        parse_int_list("4,9", name="bits", allowed={2, 3, 4, 8})


def test_variant_id_is_stable_and_distinct():
    a = VariantSpec("smollm2-135m-instruct", "gptq", 4, 128)
    b = VariantSpec("smollm2-135m-instruct", "gptq", 4, 128)
    c = VariantSpec("smollm2-135m-instruct", "gptq", 4, 64)
    assert a.variant_id == b.variant_id != c.variant_id
    assert a.variant_id.startswith("smollm2-135m-instruct--gptq-w4g128-s0-")
    assert VariantSpec.from_dict(a.to_dict()) == a


def test_store_no_duplicates_and_label_matrix(store):
    v = VariantSpec("m", "rtn", 4)
    store.add_variant(v)
    store.add_items([ItemRow("t", f"i{k}", "s", k % 2) for k in range(3)])
    rows = [OutputRow(v.variant_id, "t", "i0", 1, "B"), OutputRow(v.variant_id, "t", "i1", REFUSED, "I cannot")]
    assert store.add_outputs(rows) == 2
    assert store.add_outputs(rows) == 0  # resume never duplicates
    ids, lab = store.label_matrix("t", [v.variant_id])
    assert ids == ["i0", "i1", "i2"] and lab.tolist() == [[1, REFUSED, INVALID]]
    assert store.done_item_ids(v.variant_id, "t") == {"i0", "i1"}
    assert store.variant_spec(v.variant_id) == v
    assert set(store.frame("outputs")["outcome"]) == {"label", "refused"}


def test_store_two_processes_write_concurrently(tmp_path):
    db = tmp_path / "shared.db"
    ResultStore(db).close()
    code = (
        "import sys; from codesign.store import ResultStore, OutputRow\n"
        "s = ResultStore(sys.argv[1]); w = sys.argv[2]\n"
        "for k in range(200): s.add_outputs([OutputRow('v'+w, 't', str(k), 0)])\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(db), str(w)]) for w in range(2)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    with ResultStore(db) as s:
        assert len(s.frame("outputs")) == 400


def test_study_resume_requires_same_config(store):
    store.create_study("s", {"a": 1})
    store.create_study("s", {"a": 1})
    with pytest.raises(ValueError, match="different config"):
        store.create_study("s", {"a": 2})
    from codesign.records import Configuration, StudyPoint

    point = StudyPoint("s", "bo", 0, 0, 0, Configuration(("x",), "sequential", "h100-sxm"), {"trust": 50.0}, True)
    store.add_study_point(point)
    store.add_study_point(point)
    pts = store.study_points("s")
    assert len(pts) == 1 and pts[0].objectives == {"trust": 50.0} and pts[0].config == point.config


def test_study_result_round_trips_through_the_store(store):
    from codesign.records import FrontPoint, HypervolumeStep, Recommendation, StudyResult

    res = StudyResult("s", (("trust", "max"), ("tpot_ms", "min")), (1.0, -2.0), 3.5, 7,
                      (FrontPoint(("bo", 0, 3), ("bo", "random")), FrontPoint(("bo", 0, 3), ("bo",), "h100-sxm")),
                      (HypervolumeStep("bo", 0, 1, 0, 0.5, 0.1, -0.2), HypervolumeStep("exhaustive", 0, 7, 0, 3.5)),
                      (Recommendation("Highest trust score", "best", ("bo", 0, 3)),))
    store.save_study_result(res)
    assert store.study_result("s") == res
    store.save_study_result(res)  # a re-run replaces the result, never duplicates it
    assert store.study_result("s") == res and store.study_result("other") is None
    assert [h.method for h in res.final_hypervolume()] == ["bo", "exhaustive"]


def test_eval_runs_are_typed_rows(store):
    from codesign.records import EvalRun

    run = EvalRun("v", "mmlu", "loglik", "cpu", 4, 100, 0, 50.0, None, None, 1 << 20, 2.0)
    store.add_eval_run(run)
    assert store.eval_runs() == [run] and store.eval_runs("w") == []


def test_tiny_models_build_offline():
    from codesign.models import load_model

    for name in ("tiny-llama", "tiny-qwen2", "tiny-gpt2", "tiny-neox", "tiny-mistral"):
        lm = load_model(name)
        enc = lm.tokenizer.apply_chat_template([{"role": "user", "content": "hi é"}], add_generation_prompt=True,
                                               return_tensors="pt", return_dict=True)
        out = lm.model(**enc)
        assert out.logits.shape[-1] == lm.model.config.vocab_size
        assert lm.tokenizer.decode(enc["input_ids"][0]).endswith("assistant\n")


def test_random_shape_config():
    from codesign.models import builtin_shape_names, model_config

    assert {"llama-2-7b", "llama-2-13b", "llama-3-8b", "qwen2.5-0.5b", "smollm2-135m"} <= set(builtin_shape_names())
    cfg = model_config("random:llama-2-13b")
    assert cfg.hidden_size == 5120 and cfg.num_hidden_layers == 40
    with pytest.raises(ConfigError, match="unknown model shape"):
        model_config("random:nope")


def test_variant_names_parse_back_and_one_ensemble_label():
    from codesign.records import VariantSpec, configuration_label, ensemble_label

    specs = [VariantSpec("m"), VariantSpec("m", "gptq", 3, -1, True), VariantSpec("m", "rtn", 4, 128),
             VariantSpec("m", "awq", 8, 64)]
    for s in specs:  # parse is the inverse of short_name
        p = VariantSpec.parse(s.short_name, "m")
        assert (p.method, p.bits, p.group_size, p.sym, p.short_name) == (s.method, s.bits, s.group_size, s.sym,
                                                                         s.short_name)
    assert VariantSpec.parse("w4g-1", "m", method="rtn").short_name == "rtn-w4gpc"
    for bad in ("rtn-w4", "w4g128", "rtn-w4g0", "dense2"):
        with pytest.raises(ValueError, match="variant name|group size 0"):
            VariantSpec.parse(bad)
    # the same set, whatever the order: lowest precision first
    assert ensemble_label(specs) == ensemble_label(specs[::-1]) == "gptq-w3gpc-sym+rtn-w4g128+awq-w8g64+dense"
    assert configuration_label(specs[2:3], "parallel", "h100-sxm") == "rtn-w4g128 @ h100-sxm"
    assert configuration_label(specs[1:3], "parallel") == "gptq-w3gpc-sym+rtn-w4g128 · parallel"
