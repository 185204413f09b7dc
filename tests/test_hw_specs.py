"""Accelerator spec files: built-ins load, bad files fail with file / field / value / allowed, lookup order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import hwmodels
from codesign.config import ConfigError
from hwmodels.spec import AcceleratorSpec, json_schema

GOOD = {"name": "my-chip", "memory": {"capacity_gb": 16, "bandwidth_gbs": 512},
        "compute_tflops": {"fp16": 100, "int8": 200}}


def write(tmp_path: Path, data, name="chip.yaml") -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return p


@pytest.mark.parametrize("name", ["h100-sxm", "a100-80gb", "l4", "jetson-orin", "mpu-hypo"])
def test_builtin_specs_load_with_sources(name):
    spec = hwmodels.load_spec(name)
    assert spec.sources and all(s.startswith("http") for s in spec.sources)
    assert spec.memory.bandwidth_gbs > 0 and spec.compute_tflops
    assert name in hwmodels.list_specs()


def test_builtin_numbers_and_multi_precision_units():
    h100 = hwmodels.load_spec("h100-sxm")
    assert (h100.memory.bandwidth_gbs, h100.compute_tflops["fp16"], h100.compute_tflops["int8"]) == (3350, 989.4,
                                                                                                      1978.9)
    mpu = hwmodels.load_spec("mpu-hypo")
    assert {"w2a16", "w3a16", "w4a16", "w8a16"} <= set(mpu.compute_tflops)
    assert mpu.compute_tflops["w4a16"] == pytest.approx(2 * 65536 * 1.0 / 1e3)  # from mac_units x clock
    assert set(mpu.area.mm2_per_mac) >= {"w2a16", "w3a16", "w4a16", "w8a16"} and mpu.knobs


def test_missing_bandwidth(tmp_path):
    p = write(tmp_path, {**GOOD, "memory": {"capacity_gb": 16}})
    with pytest.raises(ConfigError) as e:
        hwmodels.load_spec(p)
    msg = str(e.value)
    assert str(p) in msg and "memory.bandwidth_gbs" in msg and "required" in msg


def test_negative_capacity(tmp_path):
    p = write(tmp_path, {**GOOD, "memory": {"capacity_gb": -80, "bandwidth_gbs": 512}})
    with pytest.raises(ConfigError) as e:
        hwmodels.load_spec(p)
    msg = str(e.value)
    assert str(p) in msg and "memory.capacity_gb = -80" in msg and "allowed: > 0" in msg


def test_unknown_datatype(tmp_path):
    p = write(tmp_path, {**GOOD, "compute_tflops": {"fp16": 100, "fp17": 5}})
    with pytest.raises(ConfigError) as e:
        hwmodels.load_spec(p)
    msg = str(e.value)
    assert str(p) in msg and "compute_tflops" in msg and "'fp17'" in msg and "allowed:" in msg and "int4" in msg


def test_not_yaml_and_not_a_mapping(tmp_path):
    p = write(tmp_path, "name: [unclosed\n  memory: {", "broken.yaml")
    with pytest.raises(ConfigError, match=r"broken.yaml: not valid YAML"):
        hwmodels.load_spec(p)
    q = write(tmp_path, "- just\n- a list\n", "list.yaml")
    with pytest.raises(ConfigError, match=r"list.yaml: expected a mapping"):
        hwmodels.load_spec(q)
    with pytest.raises(ConfigError, match="file not found"):
        hwmodels.load_spec(tmp_path / "absent.yaml")


def test_typos_and_bad_values_are_errors(tmp_path):
    cases = [({**GOOD, "bandwith_gbs": 3}, "bandwith_gbs"),
             ({**GOOD, "efficiency": {"default": {"compute": 1.5, "memory": 0.8}}}, "efficiency.default.compute = 1.5"),
             ({**GOOD, "compute_tflops": {"fp16": 0}}, "fp16 = 0.0 is not allowed (allowed: a finite number > 0"),
             ({**GOOD, "compute_tflops": {}}, "compute_tflops is empty"),
             ({**GOOD, "knobs": {"warp_drive": {"min": 1, "max": 2}}}, "unknown knob 'warp_drive'"),
             ({**GOOD, "knobs": {"bandwidth_gbs": {"min": 5}}}, "needs either 'values' or both"),
             ({**GOOD, "mac_units": {"int8": 1024}}, "mac_units needs clock_ghz")]
    for data, needle in cases:
        with pytest.raises(ConfigError) as e:
            hwmodels.load_spec(write(tmp_path, data))
        assert needle in str(e.value), (needle, str(e.value))


def test_lookup_by_path_name_field_and_user_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CODESIGN_CACHE", str(tmp_path / "cache"))
    assert hwmodels.load_spec(write(tmp_path, GOOD)).name == "my-chip"
    assert hwmodels.load_spec("nvidia-h100-sxm").name == "nvidia-h100-sxm"  # the `name:` field
    user = tmp_path / "cache" / "specs"
    user.mkdir(parents=True)
    # a user spec with a built-in's stem overrides it (measured / calibrated specs win)
    (user / "l4.yaml").write_text(yaml.safe_dump({**GOOD, "name": "my-l4"}))
    (user / "edge-x.yaml").write_text(yaml.safe_dump({**GOOD, "name": "edge-x"}))
    assert hwmodels.load_spec("l4").name == "my-l4"
    assert "edge-x" in hwmodels.list_specs()
    with pytest.raises(ConfigError, match=r"unknown accelerator spec 'nope' \(available: .*h100-sxm"):
        hwmodels.load_spec("nope")


def test_json_schema_documents_fields():
    s = json_schema()
    json.dumps(s)
    assert {"name", "memory", "compute_tflops", "efficiency", "overhead_us", "knobs"} <= set(s["properties"])
    assert set(s["required"]) == {"name", "memory"}
    mem = s["$defs"]["Memory"]["properties"]
    assert mem["bandwidth_gbs"]["exclusiveMinimum"] == 0


def test_energy_and_area_defaults():
    spec = AcceleratorSpec.model_validate({**GOOD, "process_nm": 45})
    assert spec.pj_per_op("fp16") == pytest.approx(0.75) and spec.area_for({"fp16"}) is None
    withs = AcceleratorSpec.model_validate({**GOOD, "clock_ghz": 1.0, "area": {"fixed_mm2": 10}})
    # no mm2_per_mac given: the Horowitz 45 nm area of an fp16 MAC; units from peak / (2 x clock)
    assert withs.area_for({"fp16"}) == pytest.approx(10 + 100e3 / 2 * (1640 + 1360) * 1e-6)
