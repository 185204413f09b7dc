"""Accelerator specs (YAML, one file per accelerator), model shapes, and the analytical PPA/roofline model.

Public API::

    load_spec(name_or_path) -> AcceleratorSpec      list_specs()      json_schema()
    load_shape(name_or_config) -> ModelShape         builtin_shapes()
    resolve_shape(model, config=None) -> ModelShape  shape_name(model)   (the one resolver of model names)
    estimate(spec, shape, wbits=16, group_size=128, abits=16, kvbits=16, batch=1,
             prompt_len=512, gen_len=128) -> CostEstimate
    estimate_ensemble(spec, shape, member_bits, group_size=128, schedule="sequential", ...,
                      gated_fraction=None) -> CostEstimate
    roofline.evaluate_grid(specs, shapes, wbits=[...], ...) -> Grid   (vectorized)
    roofline.evaluate_points(specs, shapes, spec_index=..., wbits=array, ...) -> dict of arrays
    SCHEDULES / register_schedule / get_schedule
    load_runtime(name_or_path) -> RuntimeProfile     list_runtimes()   runtime_schema()   KERNELS
    (every estimate/evaluate function takes runtime=<profile>; see hwmodels/runtime.py)
"""

from hwmodels.ensemble import SCHEDULES, Schedule, estimate_ensemble, get_schedule, register_schedule  # noqa: F401
from hwmodels.estimate import CostEstimate, estimate  # noqa: F401
from hwmodels.roofline import Grid, evaluate_grid, evaluate_points  # noqa: F401
from hwmodels.runtime import KERNELS, RuntimeProfile, list_runtimes, load_runtime  # noqa: F401
from hwmodels.runtime import json_schema as runtime_schema  # noqa: F401
from hwmodels.shapes import ModelShape, builtin_shapes, load_shape, resolve_shape, shape_from_config, shape_name  # noqa: F401
from hwmodels.spec import AcceleratorSpec, json_schema, list_specs, load_spec  # noqa: F401
