"""Mutation testing of the modules that produce the numbers people read (issue 21), with mutmut 3.

Slow (minutes per module), so it runs outside CI, one module at a time, each against its own fast
tests only. For every module a scratch copy of the repository is made under ``--work`` with a
``[tool.mutmut]`` section that mutates just that file and selects just those tests; mutmut then runs
each mutant against the tests that execute the mutated function. Results land in
``experiments/mutation/results/<module>.json`` (counts, surviving mutants with their diffs) and
the table ``experiments/mutation/RESULTS.md`` is rebuilt from every result file present.

Setup once (a separate environment keeps mutmut's dependencies out of the system Python):

    python3 -m venv --system-site-packages /tmp/mutvenv && /tmp/mutvenv/bin/pip install mutmut==3.8.1

Run (shared 2-core box: one worker, low priority; most important modules first):

    CODESIGN_DATA=/work/shared/data nice -n 15 python3 experiments/mutation/run.py --mutmut /tmp/mutvenv/bin/mutmut
    ... run.py --modules metrics parsing     # a subset
    ... run.py --table                        # only rebuild RESULTS.md from results/*.json

Score = killed / (killed + survived + no tests + timeout), the equivalent mutants listed in
``EQUIVALENT`` below (each with the reason) taken out of the denominator.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

# name -> (file to mutate, its fast related tests, extra pytest args); most important first.
MODULES: dict[str, tuple[str, list[str], list[str]]] = {
    "metrics": ("codesign/evaluate/metrics.py", ["tests/test_guard_scores.py", "tests/test_eval_metrics.py"],
                ["--deselect", "tests/test_eval_metrics.py::test_dpd_eod_agree_with_fairlearn"]),  # 11 s: fairlearn
    "parsing": ("codesign/evaluate/parsing.py", ["tests/test_guard_parsers.py", "tests/test_eval_parsing.py"], []),
    "voting": ("codesign/voting.py", ["tests/test_voting.py"], []),
    "pareto": ("codesign/pareto.py", ["tests/test_guard_quant_store.py", "tests/test_explore_core.py"], []),
    # the store's own guard file plus the fast store tests (the vote/protocol store files build
    # fixtures for ~10 s each: too slow per mutant)
    "store": ("codesign/store.py", ["tests/test_guard_store.py", "tests/test_guard_quant_store.py",
                                    "tests/test_foundation.py"],
              ["--deselect", "tests/test_foundation.py::test_tiny_models_build_offline",
               "--deselect", "tests/test_foundation.py::test_store_two_processes_write_concurrently"]),
    "rtn": ("codesign/quantize/rtn.py", ["tests/test_guard_quant_store.py"], []),
    "grid": ("codesign/quantize/grid.py", ["tests/test_guard_quant_store.py", "tests/test_quantize.py"],
             ["-m", "not slow"]),
    "packing": ("codesign/quantize/packing.py", ["tests/test_quantize.py"], ["-m", "not slow", "-k", "pack"]),
    # the hardware model: a 30 s CLI subprocess test is left out
    "ensemble": ("hwmodels/ensemble.py", ["tests/test_guard_ensemble.py", "tests/test_guard_roofline.py",
                                          "tests/test_hw_model.py",
                                          "tests/test_runtime_profiles.py"], ["--deselect", "tests/test_runtime_profiles.py::test_cli_bad_profile_exits_2_with_one_error"]),
    # 1974 mutants, most in _core, which every roofline test runs: the hand-reference file only, so a
    # full run fits in half an hour on the shared box
    "roofline": ("hwmodels/roofline.py", ["tests/test_guard_roofline.py"], []),
}

# mutant name -> why it cannot change behaviour (reviewed by hand; see results/<module>.json diffs)
EQUIVALENT: dict[str, str] = {
    # metrics
    "codesign.evaluate.metrics.x_meaningful_accuracy__mutmut_6": "drops the argument 'answered', the default",
    "codesign.evaluate.metrics.x_accuracy__mutmut_26": "base == 0 means no counted item, so correct == 0 too: 0/1 == 0",
    "codesign.evaluate.metrics.x__binary_view__mutmut_17": "None instead of 0 for a DT non-answer: DPD/EOD only "
                                                          "test pred == 1, which both fail",
    "codesign.evaluate.metrics.x__binary_view__mutmut_30": "1 + y instead of 1 - y: for y = 0 both are 1, for y = 1 "
                                                          "2 and 0 both differ from 1, all DPD/EOD test",
    "codesign.evaluate.metrics.x_demographic_parity_difference__mutmut_15": 'float("NAN") is float("nan")',
    "codesign.evaluate.metrics.x_equalized_odds_difference__mutmut_15": 'float("NAN") is float("nan")',
    "codesign.evaluate.metrics.x_equalized_odds_difference__mutmut_24": "y != cls swaps the TPR and FPR passes; "
                                                                       "EOD is the max of both gaps either way",
    "codesign.evaluate.metrics.x_ethics_aggregate__mutmut_3": "dtype None: the list holds floats (1.0 - x), so "
                                                             "numpy infers float64 anyway",
    "codesign.evaluate.metrics.x_ethics_aggregate__mutmut_5": "same as _3 (dtype argument dropped)",
    "codesign.evaluate.metrics.x_ethics_aggregate__mutmut_20": 'float("NAN") is float("nan")',
    # parsing
    "codesign.evaluate.parsing.x_parse_options__mutmut_5": "name keys upper-cased: _word_pattern lower-cases every "
                                                          "name, and options never differ only by case",
    "codesign.evaluate.parsing.x_parse_options__mutmut_12": "alias keys upper-cased: as _5",
    "codesign.evaluate.parsing.x_parse_options__mutmut_18": "refusal-label keys upper-cased: as _5",
    "codesign.evaluate.parsing.x_parse_letter__mutmut_28": "text is non-empty here (empty text returned INVALID)",
    "codesign.evaluate.parsing.x_parse_letter__mutmut_29": "extra 'X' in the lstrip set: raw only matters when the "
                                                          "leading letter is 'a', so raw never starts with X",
    "codesign.evaluate.parsing.x_parse_letter__mutmut_50": "rindex = index on 'abcd' (distinct letters)",
    "codesign.evaluate.parsing.x_parse_letter__mutmut_59": "rindex = index on 'abcd' (distinct letters)",
    "codesign.evaluate.parsing.x_parse_letter__mutmut_62": "len(found) == 1 returned just above, so >= 1 is > 1",
    "codesign.evaluate.parsing.x_parse_letter__mutmut_75": "text is non-empty here",
    "codesign.evaluate.parsing.x_parse_letter__mutmut_79": "rindex = index on 'ABCD' (distinct letters)",
    "codesign.evaluate.parsing.x_parse_options__mutmut_32": "_LEAD is anchored at ^ (no MULTILINE): it matches "
                                                           "once whatever the count",
    "codesign.evaluate.parsing.x_parse_options__mutmut_34": "as _32 (count=2)",
    "codesign.evaluate.parsing.x_refusal_position__mutmut_17": "a tie keeps the same offset (< or <=)",
    "codesign.voting.x__subset_votes_matmul__mutmut_6": "dtype None: weights stay float64 (exact), only slower",
    "codesign.voting.x__subset_votes_matmul__mutmut_7": "always float64: exact, only slower",
    "codesign.voting.x__subset_votes_matmul__mutmut_10": "(m - 1) * 2**m crosses 2**24 at the same m as (m + 1) * 2**m (m = 20)",
    "codesign.voting.x__subset_votes_matmul__mutmut_11": "(m + 2) * 2**m crosses 2**24 at the same m (m = 20)",
    "codesign.voting.x__subset_votes_matmul__mutmut_13": "3**m: float64 for every m > 16 (exact), only slower",
    "codesign.voting.x__subset_votes_matmul__mutmut_14": "<= vs <: (m + 1) * 2**m never equals 2**24",
    "codesign.voting.x__subset_votes_matmul__mutmut_15": "2 * 24: float64 for every m > 16 (exact), only slower",
    "codesign.voting.x__subset_votes_matmul__mutmut_17": "2**25 admits float32 up to m = 20, where a tie has at most 10 votes a side: sums < 2**24, exact",
    "codesign.voting.x__subset_votes_matmul__mutmut_19": "weights left float64 (masks * float64): the product is float64, exact",
    "codesign.voting.x__subset_votes_matmul__mutmut_21": "int64 member weights cast to the same dtype afterwards",
    "codesign.voting.x__subset_votes_matmul__mutmut_24": "values cast to float, then written into the integer output: same integers",
    "codesign.voting.x__subset_votes_matmul__mutmut_31": "chunk size only tiles the items",
    "codesign.voting.x__subset_votes_matmul__mutmut_33": "true division then int(): the same chunk size",
    "codesign.voting.x__subset_votes_matmul__mutmut_34": "chunk size only tiles the items",
    "codesign.voting.x__subset_votes_matmul__mutmut_39": "chunk size only tiles the items",
    "codesign.voting.x__subset_votes_matmul__mutmut_40": "chunk size only tiles the items",
    "codesign.voting.x__subset_votes_doubling__mutmut_8": "a wider packing shift, with the dtype chosen for that shift: same votes",
    "codesign.voting.x__subset_votes_doubling__mutmut_16": "log2(max(k, 2)) vs log2(max(k, 1)): shift is max(1, .) = 1 for k <= 2 either way",
    "codesign.voting.x__subset_votes_doubling__mutmut_18": "always uint64: wider, same votes",
    "codesign.voting.x__subset_votes_doubling__mutmut_38": "values cast to float then written into the integer output: same integers",
    "codesign.voting.x__subset_votes_doubling__mutmut_41": "2 << m allocates unused extra subsets",
    "codesign.voting.x__subset_votes_doubling__mutmut_65": "dtype None: int64 codes written into the output cast back",
    "codesign.voting.x__subset_votes_doubling__mutmut_67": "as _65",
    "codesign.voting.x__subset_votes_doubling__mutmut_73": "range without the chunk step: a different tiling, same votes",
    "codesign.voting.x__subset_votes_doubling__mutmut_84": "ref[0] = None stores False in a bool array",
    "codesign.voting.x_subset_masks__mutmut_15": "np.arange default dtype is int64 on this platform",
    "codesign.voting.x_subset_masks__mutmut_18": "as _15",
    "codesign.voting.x_subset_votes__mutmut_24": "masks.shape[1] (= m >= 1) vs shape[0]: with no subsets any(axis=1).all() is True, so no raise either way",
    "codesign.voting.x_subset_votes__mutmut_42": "labels are ids >= 0 or the codes -1/-2: min > -128 and >= -128 agree",
    "codesign.voting.x_subset_votes__mutmut_44": "as _42 (>= -129)",
    "codesign.voting.x_subset_votes__mutmut_65": "m = 16 on the matrix path instead of doubling: both exact (tested against vote_loop)",
    "codesign.voting.x_subset_votes__mutmut_66": "m = 17 on the doubling path (uint64): exact",
    "codesign.voting.x_subset_votes__mutmut_83": "item chunk 257 instead of 256: tiling only",
    "codesign.voting.x_subset_votes__mutmut_90": "the matrix path's own chunk instead of the caller's: tiling only",
    "codesign.voting.x__member_weights__mutmut_5": "count term 2**(m+1): still above every tie bit; sums stay < 2**24 in float32 (m <= 19, ties <= 9 votes a side)",
    "codesign.voting.x__member_weights__mutmut_11": "tie bits halved (the last member's becomes 0): equal-count disjoint sides are decided by their highest bit, never the last member's",
    "codesign.voting.x_vote_loop__mutmut_12": "numpy reads any negative size in reshape as -1",
    "codesign.voting.x_vote_loop__mutmut_43": "every count + 1: same argmax (vote_loop is the tests' reference)",
    "codesign.voting.x_vote_loop__mutmut_44": "every count x 2: same argmax",
    "codesign.quantize.packing.x__offsets__mutmut_4": "CPU-only: device=None is this box's only device (a GPU run must check it)",
    "codesign.quantize.packing.x__offsets__mutmut_7": "CPU-only: device=None is this box's only device (a GPU run must check it)",
    "codesign.quantize.packing.x_pack__mutmut_35": "CPU-only: device=None is this box's only device (a GPU run must check it)",
    "codesign.quantize.packing.x_pack__mutmut_42": "CPU-only: device=None is this box's only device (a GPU run must check it)",
    "codesign.quantize.packing.x_pack__mutmut_47": "CPU-only: device=None is this box's only device (a GPU run must check it)",
    "codesign.quantize.packing.x_unpack__mutmut_22": "CPU-only: device=None is this box's only device (a GPU run must check it)",
    "codesign.quantize.packing.x_unpack__mutmut_25": "CPU-only: device=None is this box's only device (a GPU run must check it)",
    "codesign.quantize.packing.x_unpack__mutmut_82": "CPU-only: device=None is this box's only device (a GPU run must check it)",
    "codesign.quantize.rtn.x_rtn_quantize__mutmut_27": "CPU-only: device=None is this box's only device (a GPU run must check it)",
    "codesign.quantize.rtn.x_rtn_quantize__mutmut_30": "CPU-only: device=None is this box's only device (a GPU run must check it)",
    "codesign.quantize.packing.x__offsets__mutmut_5": "arange(32) defaults to int64, the dtype given",
    "codesign.quantize.packing.x__offsets__mutmut_8": "as _5",
    "codesign.quantize.packing.x_pack__mutmut_62": "shift + bits == 32: the spilled part q >> bits is 0 for in-range values (masked first)",
    "codesign.quantize.packing.x_unpack__mutmut_125": "shift + bits == 32: hi_word << bits is cut by the bit mask",
    "codesign.quantize.packing.x_unpack__mutmut_2": "32 / bits is never 0: the general path, exact for every width",
    "codesign.quantize.packing.x_unpack__mutmut_5": "32 % bits is never 1 for supported widths: the general path, exact",
    "codesign.quantize.packing.x_unpack__mutmut_11": "packed words are int32 already: .to(None) keeps int32",
    "codesign.quantize.packing.x_unpack__mutmut_16": "a leading size-1 axis is added by broadcasting anyway",
    "codesign.quantize.packing.x_unpack__mutmut_26": "arange(32 / bits, dtype=int32) gives the same integers (bits divides 32 here)",
    "codesign.quantize.packing.x_unpack__mutmut_27": "33 // bits = 32 // bits for bits in 2, 4, 8",
    "codesign.voting.x__subset_votes_matmul__mutmut_41": "chunk size only tiles the items",
    "codesign.voting.x__subset_votes_matmul__mutmut_42": "chunk size only tiles the items",
    "codesign.voting.x__subset_votes_matmul__mutmut_43": "chunk size only tiles the items",
    "codesign.voting.x__subset_votes_matmul__mutmut_56": "chunk size only tiles the items",
    "codesign.voting.x__subset_votes_matmul__mutmut_46": "eye in float64: the one-hot is cast to the weights' dtype right after",
    "codesign.voting.x__subset_votes_matmul__mutmut_48": "as _46",
    "codesign.voting.x__subset_votes_matmul__mutmut_50": "membership in float64: any_ref is the same boolean",
    "codesign.voting.x__subset_votes_matmul__mutmut_66": "as _50",
    "codesign.voting.x__subset_votes_matmul__mutmut_70": "fallback codes cast when written into the output",
    "codesign.voting.x__subset_votes_matmul__mutmut_82": "one-hot left float64: float32 weights @ float64 is computed in float64, exact",
    "codesign.voting.x__subset_votes_matmul__mutmut_109": "numpy reads any negative size in reshape as -1",
    "codesign.voting.x__subset_votes_matmul__mutmut_119": "a vote weighs at least 2**m > 1, so > 1 and > 0 agree",
    "codesign.voting.x__subset_votes_doubling__mutmut_23": "(m + 2): uint64 chosen earlier, wider",
    "codesign.voting.x__subset_votes_doubling__mutmut_24": "<= 2**32: the largest packed value is one below the bound, which uint32 holds",
    "codesign.voting.x__subset_votes_doubling__mutmut_25": "2 * 32: always uint64, wider",
    "codesign.voting.x__vote_scores__mutmut_4": "np.zeros defaults to float64",
    "codesign.voting.x__vote_scores__mutmut_6": "as _4",
    "codesign.voting.x__vote_scores__mutmut_15": "np.full with an int fill defaults to int64",
    "codesign.voting.x__vote_scores__mutmut_18": "as _15",
    "codesign.voting.x__vote_scores__mutmut_11": "an extra label column with score 0 never wins: no vote means the fallback",
    "codesign.voting.x__vote_scores__mutmut_23": "as _11",
    "codesign.voting.x_vote_loop__mutmut_63": "np.array of Python ints defaults to int64",
    "codesign.voting.x_vote_loop__mutmut_65": "as _63",
    "codesign.voting.x_subset_votes__mutmut_14": "0/1 integer masks vote exactly like boolean ones (tested)",
    "codesign.voting.x_subset_votes__mutmut_16": "as _14",
    "codesign.voting.x_subset_votes__mutmut_57": "n == 0 or no subsets: the vote loops run zero times and return the REFUSED-filled output of the same shape (tested)",
    "codesign.voting.x_subset_votes__mutmut_60": "as _57 (masks.shape[1] = m >= 1)",
    "codesign.pareto.x_to_maximization__mutmut_3": "float64 only fixes the dtype: integer inputs give the same numbers",
    "codesign.pareto.x_to_maximization__mutmut_5": "float64 only fixes the dtype: integer inputs give the same numbers",
    "codesign.pareto.x_pareto_mask__mutmut_5": "float64 only fixes the dtype: integer inputs give the same numbers",
    "codesign.pareto.x_pareto_mask__mutmut_7": "float64 only fixes the dtype: integer inputs give the same numbers",
    "codesign.pareto.x_pareto_front__mutmut_4": "float64 only fixes the dtype: integer inputs give the same numbers",
    "codesign.pareto.x_pareto_front__mutmut_6": "float64 only fixes the dtype: integer inputs give the same numbers",
    "codesign.pareto.x_fill_missing__mutmut_3": "float64 only fixes the dtype: integer inputs give the same numbers",
    "codesign.pareto.x_fill_missing__mutmut_5": "float64 only fixes the dtype: integer inputs give the same numbers",
    "codesign.pareto.x_hypervolume__mutmut_3": "float64 only fixes the dtype: integer inputs give the same numbers",
    "codesign.pareto.x_hypervolume__mutmut_5": "float64 only fixes the dtype: integer inputs give the same numbers",
    "codesign.pareto.x_hypervolume__mutmut_9": "float64 only fixes the dtype: integer inputs give the same numbers",
    "codesign.pareto.x_hypervolume__mutmut_11": "float64 only fixes the dtype: integer inputs give the same numbers",
    "codesign.pareto.x_nadir_reference__mutmut_4": "float64 only fixes the dtype: integer inputs give the same numbers",
    "codesign.pareto.x_nadir_reference__mutmut_6": "float64 only fixes the dtype: integer inputs give the same numbers",
    "codesign.pareto.x_hypervolume_trace__mutmut_3": "float64 only fixes the dtype: integer inputs give the same numbers",
    "codesign.pareto.x_hypervolume_trace__mutmut_5": "float64 only fixes the dtype: integer inputs give the same numbers",
    "codesign.pareto.x_to_maximization__mutmut_22": "sign is +-1: values / sign = values * sign",
    "codesign.pareto.x_pareto_mask__mutmut_2": "the default chunk size only tiles the comparison",
    "codesign.pareto.x_pareto_mask__mutmut_28": "non-finite rows never dominate (finite mask) and start excluded: +inf or -inf alike",
    "codesign.pareto.x_pareto_mask__mutmut_35": "chunk step 1: overlapping blocks, the same mask",
    "codesign.pareto.x_pareto_front__mutmut_13": "np.unique of an empty front is the empty front",
    "codesign.pareto.x_fill_missing__mutmut_10": "an empty Y has no NaN and returned above: the else branch is unreachable",
    "codesign.pareto.x_fill_missing__mutmut_23": "as _10",
    "codesign.pareto.x_fill_missing__mutmut_24": "as _10",
    "codesign.pareto.x__hv2__mutmut_3": "tie order of equal x: zero-width slabs, the running max is the same",
    "codesign.pareto.x__hv2__mutmut_5": "as _3",
    "codesign.pareto.x__hv2__mutmut_9": "numpy reads the sort kind case-insensitively",
    "codesign.pareto.x__hv__mutmut_5": "the recursion never receives an empty set (hypervolume returns 0 before)",
    "codesign.pareto.x__hv__mutmut_20": "tie order of equal last objective: zero-depth slabs are skipped, the next slab holds all",
    "codesign.pareto.x__hv__mutmut_22": "as _20",
    "codesign.pareto.x__hv__mutmut_27": "numpy reads the sort kind case-insensitively",
    "codesign.pareto.x__hv__mutmut_45": "a zero-depth slab adds 0 either way",
    "codesign.pareto.x__hv__mutmut_53": "when dominated points are pruned changes speed, not the volume",
    "codesign.pareto.x__hv__mutmut_54": "as _53",
    "codesign.pareto.x_hypervolume__mutmut_13": "numpy reads any negative size in reshape as -1",
    "codesign.pareto.x_hypervolume__mutmut_30": "a point equal to the reference in one objective spans zero volume",
    "codesign.pareto.x_hypervolume_trace__mutmut_7": "0/1 feasibility flags test like booleans",
    "codesign.pareto.x_hypervolume_trace__mutmut_9": "as _7",
    "codesign.pareto.x_hypervolume_trace__mutmut_28": "None is falsy like False",
    "codesign.pareto.x_hypervolume_trace__mutmut_29": "recomputing the same front gives the same volume",
    "codesign.pareto.x_hypervolume_trace__mutmut_32": "re-adding earlier points only duplicates front rows; hypervolume drops duplicates",
    "codesign.quantize.grid.xǁQuantizedWeightǁfrom_weight__mutmut_3": "only picks the in-place fast path or the general gather path; both round onto the same grid",
    "codesign.quantize.grid.xǁQuantizedWeightǁfrom_weight__mutmut_5": "only picks the in-place fast path or the general gather path; both round onto the same grid",
    "codesign.quantize.grid.xǁQuantizedWeightǁfrom_weight__mutmut_6": "only picks the in-place fast path or the general gather path; both round onto the same grid",
    "codesign.quantize.grid.xǁQuantizedWeightǁfrom_weight__mutmut_7": "only picks the in-place fast path or the general gather path; both round onto the same grid",
    "codesign.quantize.grid.xǁQuantizedWeightǁfrom_weight__mutmut_12": "only picks the in-place fast path or the general gather path; both round onto the same grid",
    "codesign.quantize.grid.xǁQuantizedWeightǁfrom_weight__mutmut_19": "only picks the in-place fast path or the general gather path; both round onto the same grid",
    "codesign.quantize.grid.xǁQuantizedWeightǁfrom_weight__mutmut_15": "CPU-only: device=None is this box's only device (a GPU run must check it)",
    "codesign.quantize.grid.xǁQuantizedWeightǁfrom_weight__mutmut_18": "CPU-only: device=None is this box's only device (a GPU run must check it)",
    "codesign.quantize.grid.xǁQuantizedWeightǁto_tensors__mutmut_6": "dim=0 is pack's default",
    "codesign.quantize.grid.xǁQuantizedWeightǁfrom_tensors__mutmut_8": "dim=0 is unpack's default",
    "codesign.quantize.grid.xǁQuantizedWeightǁto_tensors__mutmut_9": "g_idx is int32 already",
    # ensemble
    "hwmodels.ensemble.x_estimate_ensemble__mutmut_71": "astype(None) is astype(float64)",
    "hwmodels.ensemble.x_quorum_mask__mutmut_23": "numpy reads the sort kind case-insensitively",
    "hwmodels.ensemble.x_estimate_ensemble__mutmut_289": "ops=None is CostEstimate's default",
    "hwmodels.ensemble.x_estimate_ensemble__mutmut_335": "> 0.5 vs >= 0.5 on the memory-bound share: differs only "
                                                        "at a share of exactly 0.5, a tie with no right answer",
    "hwmodels.ensemble.x_estimate_ensemble__mutmut_346": "as _335 (prefill)",
    # roofline (hwmodels/roofline.py)
    **{f"hwmodels.roofline.x__remember__mutmut_{i}": "the table cache's bookkeeping (what is kept, which entry "
       "is evicted): a miss rebuilds the same table, only slower" for i in (1, 2, 3, 4)},
    **{f"hwmodels.roofline.x_spec_table__mutmut_{i}": "the spec-table cache key or lookup: a different but still "
       "deterministic key, or no hit at all, rebuilds the same table" for i in (9, 11, 13, 14, 15, 16, 17, 18, 244)},
    **{f"hwmodels.roofline.x_shape_table__mutmut_{i}": "no cache hit (the table is stored under None or never "
       "looked up): the same table, rebuilt" for i in (3, 4, 65)},
    **{f"hwmodels.roofline.x_spec_table__mutmut_{i}": "one more column/row than the datatypes (+ vector) or bit "
       "widths: never indexed" for i in (76, 79, 82, 85, 93, 95, 101, 103, 116)},
    "hwmodels.roofline.x_spec_table__mutmut_118": "base_area starts as None objects, but every entry is assigned "
                                                  "in the loop below",
    "hwmodels.roofline.x_spec_table__mutmut_164": "None stored into a float array becomes NaN, as np.nan",
    "hwmodels.roofline.x_spec_table__mutmut_170": "None stored into a float array becomes NaN, as np.nan",
    **{f"hwmodels.roofline.x_spec_table__mutmut_{i}": "bit index 0 of the unit table: never read (bits are "
       "validated >= 1; the index-0 row and column are filled after the loop)" for i in (179, 186, 237, 238, 239,
                                                                                         240, 241, 242)},
    "hwmodels.roofline.x_spec_table__mutmut_202": "a <= 17 vs <= 16 in the float-pin rule: a 16-bit float unit "
                                                  "never takes 17-bit activations (candidate_cost is None), so the "
                                                  "pin never decides at a = 17",
    **{f"hwmodels.roofline.x_shape_table__mutmut_{i}": "an integer array instead of float64: every use mixes it "
       "with floats (no integer division, no overflow at these sizes)" for i in (29, 31, 33, 35, 37, 39, 41, 43, 53,
                                                                                 55, 60, 62)},
    **{f"hwmodels.roofline.{n}": "a sum/max over axis +1 of a (configurations, operators) array is the sum over "
       "axis -1" for n in ("x__apply_floor__mutmut_31", "x__core__mutmut_382", "x__core__mutmut_390",
                           "x__core__mutmut_395", "x__core__mutmut_400", "x__core__mutmut_406", "x__core__mutmut_420",
                           "x__core__mutmut_536", "x__core__mutmut_558", "x__core__mutmut_577", "x__core__mutmut_641")},
    **{f"hwmodels.roofline.x__core__mutmut_{i}": "under ideal=True the profile is 'default', which adds no term "
       "(no kernel efficiencies, per-pass conversion with the spec's op count, no floors, overlap 1, no host time)"
       for i in (152, 158, 165, 187, 195, 198, 215, 223, 230, 231, 507, 520, 735)},
    **{f"hwmodels.roofline.x__core__mutmut_{i}": "astype(None) is float64" for i in (6, 460, 461, 462)},
    "hwmodels.roofline.x__core__mutmut_13": "at w = 16 both branches give max(a, 16) dense bits",
    "hwmodels.roofline.x__core__mutmut_14": "at w = 16 both branches give max(a, 16) dense bits",
    "hwmodels.roofline.x__core__mutmut_72": "group_size 0 is rejected by _validate before",
    "hwmodels.roofline.x__core__mutmut_82": "in_f is 0 for operators without a weight (no groups either) and the "
                                            "hidden size (>= 2) for linears",
    "hwmodels.roofline.x__core__mutmut_311": "with no on-chip memory only an empty activation would count as on "
                                             "chip, and it moves no bytes",
    "hwmodels.roofline.x__core__mutmut_312": "differs only for an on-chip memory of at most one byte",
    "hwmodels.roofline.x__core__mutmut_350": "overlap 1 adds (1 - 1) * min(c, m) = 0",
    "hwmodels.roofline.x__core__mutmut_351": "overlap is at most 1: < 2 runs the same line, adding (1 - overlap) * "
                                             "min(c, m), 0 at overlap 1",
    "hwmodels.roofline.x__core__mutmut_418": "t_m == t_c exactly: an empty operator (t = 0, nothing to add) or a "
                                             "tie with no right side",
    "hwmodels.roofline.x__core__mutmut_506": "decode=None is falsy like False",
    "hwmodels.roofline.x__core__mutmut_772": "no unit converts weights of 16 bits or more (deq_lin is False there; "
                                             "checked for fp16/bf16/fp8/int8/int4 units), so w < 16 never decides",
    "hwmodels.roofline.x__core__mutmut_773": "as _772",
    "hwmodels.roofline.x__apply_floor__mutmut_7": "the fused-away operators are inside the attention group, whose "
                                                  "floor is 0 in the else branch: max(t, 0) = t",
    "hwmodels.roofline.x__step__mutmut_17": "host - zeros = host + zeros",
    "hwmodels.roofline.x__step__mutmut_18": "host is already an (N,) array (n_layers per configuration); the "
                                            "zeros only broadcast",
    "hwmodels.roofline.x_evaluate_points__mutmut_4": "group size 129 vs 128 with the default 16-bit weights: no groups",
    "hwmodels.roofline.x_evaluate_points__mutmut_40": "numpy reads any negative size in reshape as -1",
    "hwmodels.roofline.x_evaluate_points__mutmut_51": "sym as float64 0/1: np.where reads nonzero as True",
    "hwmodels.roofline.x_evaluate_points__mutmut_82": "range(0, max(n, 2), CHUNK) has the same single start 0 for n "
                                                      "<= CHUNK and the same starts above",
    "hwmodels.roofline.x__kernels__mutmut_5": "-2 < 0 like -1: the profile's format map",
    "hwmodels.roofline.x__kernels__mutmut_8": "a str array's elements are np.str_ (a str); with None entries numpy "
                                              "makes an object array anyway",
    "hwmodels.roofline.x__kernels__mutmut_10": "as _8",
    "hwmodels.roofline.x__kernels__mutmut_16": "numpy reads any negative size in reshape as -1",
    "hwmodels.roofline.x__kernels__mutmut_36": "numpy reads any negative size in reshape as -1",
    "hwmodels.roofline.xǁGridǁto_frame__mutmut_8": "numpy reads any negative size in reshape as -1",
    "hwmodels.roofline.xǁGridǁto_frame__mutmut_18": "numpy reads any negative size in reshape as -1",
    "hwmodels.roofline.x_evaluate_grid__mutmut_11": "numpy reads any negative size in reshape as -1",
    "hwmodels.roofline.x_evaluate_grid__mutmut_22": "numpy reads any negative size in reshape as -1",
    **{f"hwmodels.roofline.xǁGridǁto_frame__mutmut_{i}": "the same values; only the pandas dtype of a column "
       "(object vs int64 / str) differs" for i in (11, 13, 23, 25, 34)},
    "hwmodels.roofline.x_spec_table__mutmut_151": "the rate of a datatype the spec gives no rate is never read: the "
                                                  "unit choice reads compute_tflops itself and skips it",
    "hwmodels.roofline.x_spec_table__mutmut_159": "the unit area of a datatype without a rate is never read: it is "
                                                  "never chosen",
    "hwmodels.roofline.x_spec_table__mutmut_162": "as _159",
    # grid (second round)
    **{f"codesign.quantize.grid.{n}": "CPU-only: device=None is this box's only device (a GPU run must check it)"
       for n in ("x_contiguous_g_idx__mutmut_6", "x_contiguous_g_idx__mutmut_9", "x_contiguous_g_idx__mutmut_13",
                 "x_contiguous_g_idx__mutmut_15", "x_search_params__mutmut_223", "x_search_params__mutmut_227",
                 "x_search_params__mutmut_237", "x_search_params__mutmut_239")},
    **{f"codesign.quantize.grid.x_search_params__mutmut_{i}": "the chunk size only tiles the candidate scan "
       "(a repeated candidate cannot win: better is a strict <)" for i in (63, 65, 66, 67, 68, 73, 79)},
    **{f"codesign.quantize.grid.{n}": "a clamp that never binds: the range always holds 0 (row_range), so "
       "-lo / scale lies in [0, maxq * (1 + 2**-11)] and rounds into [0, maxq] up to 10 bits"
       for n in ("x_find_params__mutmut_50", "x_find_params__mutmut_51", "x_find_params__mutmut_53",
                 "x_search_params__mutmut_107", "x_search_params__mutmut_108", "x_search_params__mutmut_110")},
    # store: SQL text whose letter case changed (reviewed: every line differs from the original only in case,
    # inside an SQL statement, table/column name or column type)
    **{f"codesign.store.{n}": "SQL keywords, identifiers and types are case-insensitive in SQLite" for n in (
        "x__insert_variant__mutmut_6",
        "x__insert_variant__mutmut_7",
        "x__insert_items__mutmut_6",
        "x__insert_items__mutmut_7",
        "x__insert_outputs__mutmut_10",
        "x__insert_outputs__mutmut_11",
        "x__insert_outputs__mutmut_13",
        "x__insert_outputs__mutmut_14",
        "xǁResultStoreǁ_open__mutmut_31",
        "xǁResultStoreǁ_open__mutmut_32",
        "xǁResultStoreǁ_open__mutmut_36",
        "xǁResultStoreǁ_open__mutmut_37",
        "xǁResultStoreǁ_open__mutmut_43",
        "xǁResultStoreǁ_open__mutmut_74",
        "xǁResultStoreǁ_open__mutmut_75",
        "xǁResultStoreǁ_open__mutmut_78",
        "xǁResultStoreǁ_open__mutmut_79",
        "xǁResultStoreǁ_migrate_v1__mutmut_5",
        "xǁResultStoreǁ_migrate_v1__mutmut_12",
        "xǁResultStoreǁ_migrate_v1__mutmut_13",
        "xǁResultStoreǁ_v1_views__mutmut_5",
        "xǁResultStoreǁ_missing_tables_as_temp__mutmut_5",
        "xǁResultStoreǁ_missing_tables_as_temp__mutmut_12",
        "xǁResultStoreǁ_missing_tables_as_temp__mutmut_42",
        "xǁResultStoreǁis_empty__mutmut_5",
        "xǁResultStoreǁis_empty__mutmut_7",
        "xǁResultStoreǁis_empty__mutmut_9",
        "xǁResultStoreǁis_empty__mutmut_11",
        "xǁResultStoreǁis_empty__mutmut_13",
        "xǁResultStoreǁvariant_spec__mutmut_7",
        "xǁResultStoreǁvariant_spec__mutmut_8",
        "xǁResultStoreǁvariant_spec__mutmut_14",
        "xǁResultStoreǁvariant_spec__mutmut_15",
        "xǁResultStoreǁclaim_items__mutmut_44",
        "xǁResultStoreǁclaim_items__mutmut_45",
        "xǁResultStoreǁrelease_claims__mutmut_6",
        "xǁResultStoreǁrelease_claims__mutmut_7",
        "xǁResultStoreǁrelease_claims__mutmut_9",
        "xǁResultStoreǁrelease_claims__mutmut_10",
        "xǁResultStoreǁdone_item_ids__mutmut_9",
        "xǁResultStoreǁdone_item_ids__mutmut_10",
        "xǁResultStoreǁitems__mutmut_10",
        "xǁResultStoreǁitems__mutmut_12",
        "xǁResultStoreǁitems__mutmut_13",
        "xǁResultStoreǁtasks__mutmut_3",
        "xǁResultStoreǁtasks__mutmut_4",
        "xǁResultStoreǁtasks__mutmut_8",
        "xǁResultStoreǁtasks__mutmut_9",
        "xǁResultStoreǁtasks__mutmut_17",
        "xǁResultStoreǁtasks__mutmut_18",
        "xǁResultStoreǁprotocols__mutmut_4",
        "xǁResultStoreǁprotocols__mutmut_5",
        "xǁResultStoreǁevaluated_variants__mutmut_3",
        "xǁResultStoreǁevaluated_variants__mutmut_4",
        "xǁResultStoreǁevaluated_variants__mutmut_8",
        "xǁResultStoreǁevaluated_variants__mutmut_9",
        "xǁResultStoreǁevaluated_variants__mutmut_14",
        "xǁResultStoreǁevaluated_variants__mutmut_15",
        "xǁResultStoreǁevaluated_variants__mutmut_20",
        "xǁResultStoreǁevaluated_variants__mutmut_21",
        "xǁResultStoreǁevaluated_variants__mutmut_30",
        "xǁResultStoreǁevaluated_variants__mutmut_31",
        "xǁResultStoreǁlabel_matrix__mutmut_27",
        "xǁResultStoreǁlabel_matrix__mutmut_28",
        "xǁResultStoreǁeval_runs__mutmut_8",
        "xǁResultStoreǁeval_runs__mutmut_9",
        "xǁResultStoreǁeval_runs__mutmut_18",
        "xǁResultStoreǁeval_runs__mutmut_19",
        "xǁResultStoreǁvariant_rows__mutmut_23",
        "xǁResultStoreǁvariant_rows__mutmut_24",
        "xǁResultStoreǁvariant_rows__mutmut_26",
        "xǁResultStoreǁvariant_rows__mutmut_27",
        "xǁResultStoreǁvariant_rows__mutmut_47",
        "xǁResultStoreǁvariant_rows__mutmut_48",
        "xǁResultStoreǁvariant_rows__mutmut_50",
        "xǁResultStoreǁvariant_rows__mutmut_51",
        "xǁResultStoreǁadd_measurement__mutmut_7",
        "xǁResultStoreǁadd_measurement__mutmut_9",
        "xǁResultStoreǁadd_measurement__mutmut_20",
        "xǁResultStoreǁmeasurements__mutmut_11",
        "xǁResultStoreǁcreate_study__mutmut_15",
        "xǁResultStoreǁcreate_study__mutmut_16",
        "xǁResultStoreǁcreate_study__mutmut_28",
        "xǁResultStoreǁcreate_study__mutmut_29",
        "xǁResultStoreǁstudy_config__mutmut_7",
        "xǁResultStoreǁstudy_config__mutmut_8",
        "xǁResultStoreǁadd_study_point__mutmut_6",
        "xǁResultStoreǁadd_study_point__mutmut_7",
        "xǁResultStoreǁstudy_points__mutmut_3",
        "xǁResultStoreǁstudy_points__mutmut_8",
        "xǁResultStoreǁstudy_points__mutmut_9",
        "xǁResultStoreǁstudy_points__mutmut_15",
        "xǁResultStoreǁstudy_points__mutmut_16",
        "xǁResultStoreǁstudy_points__mutmut_25",
        "xǁResultStoreǁstudy_points__mutmut_26",
        "xǁResultStoreǁsave_study_result__mutmut_11",
        "xǁResultStoreǁsave_study_result__mutmut_12",
        "xǁResultStoreǁsave_study_result__mutmut_36",
        "xǁResultStoreǁsave_study_result__mutmut_37",
        "xǁResultStoreǁsave_study_result__mutmut_45",
        "xǁResultStoreǁsave_study_result__mutmut_46",
        "xǁResultStoreǁsave_study_result__mutmut_52",
        "xǁResultStoreǁsave_study_result__mutmut_53",
        "xǁResultStoreǁsave_study_result__mutmut_60",
        "xǁResultStoreǁsave_study_result__mutmut_61",
        "xǁResultStoreǁ_save_uncertainty__mutmut_8",
        "xǁResultStoreǁ_save_uncertainty__mutmut_9",
        "xǁResultStoreǁ_save_uncertainty__mutmut_18",
        "xǁResultStoreǁ_save_uncertainty__mutmut_19",
        "xǁResultStoreǁ_save_uncertainty__mutmut_25",
        "xǁResultStoreǁ_save_uncertainty__mutmut_26",
        "xǁResultStoreǁstudy_result__mutmut_7",
        "xǁResultStoreǁstudy_result__mutmut_8",
        "xǁResultStoreǁstudy_result__mutmut_10",
        "xǁResultStoreǁstudy_result__mutmut_11",
        "xǁResultStoreǁstudy_result__mutmut_35",
        "xǁResultStoreǁstudy_result__mutmut_36",
        "xǁResultStoreǁstudy_result__mutmut_38",
        "xǁResultStoreǁstudy_result__mutmut_39",
        "xǁResultStoreǁstudy_result__mutmut_65",
        "xǁResultStoreǁstudy_result__mutmut_66",
        "xǁResultStoreǁstudy_result__mutmut_68",
        "xǁResultStoreǁstudy_result__mutmut_69",
        "xǁResultStoreǁstudy_result__mutmut_71",
        "xǁResultStoreǁstudy_result__mutmut_72",
        "xǁResultStoreǁstudy_result__mutmut_79",
        "xǁResultStoreǁstudy_result__mutmut_80",
        "xǁResultStoreǁstudy_result__mutmut_82",
        "xǁResultStoreǁstudy_result__mutmut_83",
        "xǁResultStoreǁstudy_result__mutmut_115",
        "xǁResultStoreǁstudy_result__mutmut_116",
        "xǁResultStoreǁstudy_result__mutmut_118",
        "xǁResultStoreǁstudy_result__mutmut_119",
        "xǁResultStoreǁstudy_result__mutmut_126",
        "xǁResultStoreǁstudy_result__mutmut_127",
        "xǁResultStoreǁstudy_result__mutmut_143",
        "xǁResultStoreǁstudy_result__mutmut_144",
        "xǁResultStoreǁstudy_result__mutmut_146",
        "xǁResultStoreǁstudy_result__mutmut_147",
        "xǁResultStoreǁstudy_result__mutmut_164",
        "xǁResultStoreǁstudy_result__mutmut_165",
        "xǁResultStoreǁstudy_result__mutmut_167",
        "xǁResultStoreǁstudy_result__mutmut_168",
        "xǁResultStoreǁstudies__mutmut_4",
        "xǁResultStoreǁstudies__mutmut_5",
    )},
    "codesign.evaluate.parsing.x_parse_digit__mutmut_35": "a refusal phrase starts with a letter, never at the "
                                                         "digit's offset",
}

STATUSES = ("killed", "survived", "no tests", "timeout", "suspicious", "skipped", "segfault",
            "caught by type check", "not checked", "check was interrupted by user")


def scratch(module: str, work: Path) -> Path:
    path, tests, extra = MODULES[module]
    d = work / module
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    for part in ("codesign", "hwmodels", "tests", "configs"):  # configs: tests compare the packaged copies
        shutil.copytree(ROOT / part, d / part, ignore=shutil.ignore_patterns("__pycache__", ".hypothesis"))
    conf = (ROOT / "pyproject.toml").read_text()
    conf += "\n[tool.mutmut]\n" + "\n".join([
        'source_paths = ["codesign", "hwmodels"]',
        f"only_mutate = [{json.dumps(path)}]",
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}",
        f"pytest_add_cli_args = {json.dumps(['-p', 'no:cacheprovider', '-q'] + extra)}",
        "use_git_change_detection = false",
        'also_copy = ["configs"]',
    ]) + "\n"
    (d / "pyproject.toml").write_text(conf)
    with open(d / "tests" / "conftest.py", "a") as f:
        f.write(FRESH_CACHES)
    return d


# mutmut forks every mutant's test run from a process that has already run the tests once (its stats
# pass), so content caches (the roofline's spec/shape tables, the runtime tables, lru_caches) come
# warm: a mutant in a cached builder would never run and would "survive". The scratch copy's
# conftest empties every such cache before each test.
FRESH_CACHES = """

@pytest.fixture(autouse=True)
def _mutation_fresh_caches():  # appended by experiments/mutation/run.py (scratch copy only)
    import sys as _sys
    for _name, _mod in list(_sys.modules.items()):
        if not _name.startswith(("codesign", "hwmodels")) or _mod is None:
            continue
        for _attr, _val in list(vars(_mod).items()):
            if _attr.endswith("_CACHE") and isinstance(_val, dict):
                _val.clear()
            elif callable(getattr(_val, "cache_clear", None)) and hasattr(_val, "cache_info"):
                _val.cache_clear()
    yield
"""


def mutant_diffs(d: Path, path: str, names: list[str]) -> dict[str, str]:
    """Unified diff of each mutant against the original function, read from mutmut's mutants/ copy
    (one file parse instead of a ``mutmut show`` process per mutant)."""
    import ast
    import difflib

    src = (d / "mutants" / path).read_text()
    lines = src.splitlines()
    funcs = {n.name: "\n".join(lines[n.lineno - 1:n.end_lineno]) for n in ast.walk(ast.parse(src))
             if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and "__mutmut_" in n.name}
    out = {}
    for name in names:
        fn = name.rsplit(".", 1)[-1]
        orig = fn.rsplit("__mutmut_", 1)[0] + "__mutmut_orig"
        a, b = funcs.get(orig, "").splitlines(), funcs.get(fn, "").splitlines()
        out[name] = "\n".join(difflib.unified_diff(a, b, orig, fn, lineterm="", n=0))
    return out


def run_module(module: str, mutmut: str, work: Path, max_minutes: float | None = None,
               collect_only: bool = False, only: list[str] | None = None) -> dict:
    d = work / module if collect_only else scratch(module, work)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # mutmut's mutants/ must win
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    t0 = time.time()
    log = open(work / f"{module}.log", "a" if collect_only else "w")
    proc = None if collect_only else subprocess.Popen([mutmut, "run", "--max-children", "1", *(only or [])], cwd=d, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if proc is not None:
            proc.wait(timeout=None if max_minutes is None else max_minutes * 60)
    except subprocess.TimeoutExpired:  # partial run: unchecked mutants are reported as such
        os.killpg(proc.pid, 15)
        proc.wait()
    wall = time.time() - t0
    if collect_only:
        old = RESULTS / f"{module}.json"
        wall = json.loads(old.read_text())["wall_s"] if old.exists() else 0
    out = subprocess.run([mutmut, "results", "--all", "true"], cwd=d, env=env, capture_output=True, text=True).stdout
    status = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+): (.+)$", line)
        if m:
            status[m.group(1)] = m.group(2).strip()
    live = [n for n, st in status.items() if st in ("survived", "no tests", "timeout", "suspicious")]
    diffs = mutant_diffs(d, MODULES[module][0], live)
    survivors = {n: {"status": status[n], "diff": diffs[n]} for n in live}
    counts = {s: sum(1 for v in status.values() if v == s) for s in STATUSES}
    res = {"module": module, "file": MODULES[module][0], "tests": MODULES[module][1], "wall_s": round(wall),
           "only": only or None,
           "counts": {k: v for k, v in counts.items() if v}, "n_mutants": len(status), "survivors": survivors}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{module}.json").write_text(json.dumps(res, indent=1) + "\n")
    return res


def score(res: dict) -> tuple[int, int, int, float]:
    c = res["counts"]
    equivalent = sum(1 for n in res["survivors"] if n in EQUIVALENT)
    killed = c.get("killed", 0) + c.get("caught by type check", 0)
    live = sum(c.get(s, 0) for s in ("survived", "no tests", "timeout", "suspicious")) - equivalent
    return killed, live, equivalent, (100.0 * killed / (killed + live)) if killed + live else float("nan")


def table() -> str:
    rows = ["| module | file | mutants | killed | survived | no tests | timeout | not checked | equivalent | score "
            "| wall |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    done = []
    for module in MODULES:
        f = RESULTS / f"{module}.json"
        if not f.exists():
            continue
        res = json.loads(f.read_text())
        killed, live, eq, sc = score(res)
        c = res["counts"]
        rows.append(f"| {module} | `{res['file']}` | {res['n_mutants']} | {killed} | {c.get('survived', 0)} | "
                    f"{c.get('no tests', 0)} | {c.get('timeout', 0)} | {c.get('not checked', 0)} | {eq} | {sc:.1f}% | "
                    f"{res['wall_s']} s |")
        done.append(module)
    missing = [m for m in MODULES if m not in done]
    text = "\n".join(rows) + "\n"
    if missing:
        text += f"\nNot measured yet: {', '.join(missing)}.\n"
    return text


def main() -> int:
    ap = argparse.ArgumentParser(description="mutation testing of the core modules (mutmut 3)")
    ap.add_argument("--modules", nargs="*", default=list(MODULES),
                    help=f"modules in order, each optionally NAME:MINUTES (a cap for that one); of {list(MODULES)}")
    ap.add_argument("--collect-only", action="store_true", help="read the results of an earlier (stopped) run")
    ap.add_argument("--mutmut", default=shutil.which("mutmut") or "mutmut", help="the mutmut executable")
    ap.add_argument("--work", type=Path, default=Path("/tmp/codesign-mutation"), help="scratch directory")
    ap.add_argument("--table", action="store_true", help="only rebuild RESULTS.md from results/*.json")
    ap.add_argument("--only", nargs="*", default=None, metavar="GLOB",
                    help="run only the mutants matching these mutmut names (fnmatch globs, e.g. "
                         "'hwmodels.roofline.x__shape_rows*'); the rest count as 'not checked'")
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="stop a module's run after this long (mutants not reached: 'not checked')")
    args = ap.parse_args()
    if not args.table:
        args.work.mkdir(parents=True, exist_ok=True)
        for spec in args.modules:
            module, _, cap = spec.partition(":")
            if module not in MODULES:
                ap.error(f"--modules: {module!r} is not a module (allowed: {list(MODULES)})")
            res = run_module(module, args.mutmut, args.work, float(cap) if cap else args.max_minutes,
                             args.collect_only, args.only)
            killed, live, eq, sc = score(res)
            print(f"{module}: {res['n_mutants']} mutants, killed {killed}, live {live}, equivalent {eq}, "
                  f"score {sc:.1f}% ({res['wall_s']} s)", flush=True)
    tab = table()
    md = HERE / "RESULTS.md"
    head = md.read_text().split("<!-- table -->")[0] if md.exists() else "# Mutation testing results\n\n"
    md.write_text(head + "<!-- table -->\n" + tab)
    print(tab)
    return 0


if __name__ == "__main__":
    sys.exit(main())
