"""The voting core (codesign.voting) and gating: every rule of the study, property tests, and the
vectorized subset machinery against the one-ensemble-at-a-time core."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from codesign.records import INVALID, REFUSED
from codesign.vote.gating import cost_order, gated_vote
from codesign.voting import (
    precision_ensemble_vote,
    subset_masks,
    subset_votes,
    tie_priority,
    vote_loop,
    weighted_vote,
)


def vote1(column, bits, keep_refusal=False) -> int:
    """Vote one item given as a list of member outcomes."""
    return int(precision_ensemble_vote(np.array(column)[:, None], bits, keep_refusal)[0])


# -- the rules, one by one -----------------------------------------------------------------
def test_majority_wins_over_precision():
    assert vote1([1, 1, 0], [3, 4, 16]) == 1


def test_all_refused_gives_refused():
    assert vote1([REFUSED, REFUSED, REFUSED], [4, 8, 16]) == REFUSED


def test_all_invalid_gives_invalid():
    # garbage from every member stays garbage: never credited as an abstention
    assert vote1([INVALID, INVALID], [4, 16]) == INVALID
    assert vote1([INVALID, INVALID], [4, 16], keep_refusal=True) == INVALID


def test_invalid_and_refused_only_gives_refused():
    assert vote1([INVALID, REFUSED, INVALID], [4, 8, 16]) == REFUSED
    assert vote1([INVALID, REFUSED, INVALID], [4, 8, 16], keep_refusal=True) == REFUSED


def test_invalid_votes_are_dropped():
    # two invalid answers do not outvote the one usable answer
    assert vote1([INVALID, INVALID, 2], [16, 8, 4]) == 2


def test_refusals_are_dropped_outside_ood_knowledge():
    assert vote1([REFUSED, REFUSED, 2], [16, 8, 4]) == 2


def test_ood_knowledge_refusal_is_a_label():
    assert vote1([REFUSED, REFUSED, 2], [16, 8, 4], keep_refusal=True) == REFUSED
    # and loses a majority like any other label
    assert vote1([REFUSED, 1, 1], [16, 8, 4], keep_refusal=True) == 1
    # invalid answers are still dropped
    assert vote1([INVALID, INVALID, 3], [16, 8, 4], keep_refusal=True) == 3


def test_ood_refusal_wins_a_tie_through_the_top_member():
    assert vote1([0, REFUSED], [4, 16], keep_refusal=True) == REFUSED
    assert vote1([REFUSED, 0], [4, 16], keep_refusal=True) == 0


def test_tie_taken_by_the_top_member():
    # 0 and 1 tie; the 16-bit member voted 1
    assert vote1([0, 1, INVALID], [4, 16, 8]) == 1
    assert vote1([0, 1, 1, 0], [16, 8, 4, 3]) == 0


def test_tie_without_the_top_member():
    # the 16-bit member votes 2 (not among the tied labels 0 and 1): the best voter of a tied
    # label is an 8-bit member; equal precision -> the one listed first
    labels = [2, 0, 1, 0, 1]
    bits = [16, 8, 8, 4, 4]
    assert vote1(labels, bits) == 0
    assert vote1([2, 1, 0, 0, 1], bits) == 1


def test_equal_precision_listed_first_wins():
    assert vote1([3, 1], [8, 8]) == 3
    assert vote1([1, 3], [8, 8]) == 1


def test_three_way_tie():
    assert vote1([0, 1, 2], [4, 8, 6]) == 1


def test_tie_priority_order():
    np.testing.assert_array_equal(tie_priority([4, 16, 8, 16]), [3, 0, 2, 1])


def test_one_dimensional_input_is_one_member():
    np.testing.assert_array_equal(precision_ensemble_vote(np.array([0, INVALID, REFUSED, 2]), [4]),
                                  [0, INVALID, REFUSED, 2])


def test_vectorized_over_items():
    labels = np.array([[0, 1, INVALID, REFUSED], [0, 0, 2, REFUSED], [1, 1, 2, 3]])
    np.testing.assert_array_equal(precision_ensemble_vote(labels, [16, 8, 4]), [0, 1, 2, 3])


def test_sparse_and_large_label_ids():
    labels = np.array([[1000, 7], [1000, 9], [5, 9]])
    np.testing.assert_array_equal(precision_ensemble_vote(labels, [4, 8, 16]), [1000, 9])


@pytest.mark.parametrize("labels,bits,match", [
    (np.zeros((2, 3, 1), dtype=int), [4, 8], "shape"),
    (np.zeros((2, 3), dtype=int), [4], "bits has 1"),
    (np.array([[0, -3]]), [4], "-3"),
    (np.array([[0.5, 1.0]]), [4], "integers"),
    (np.zeros((0, 3), dtype=int), [], "at least one member"),
])
def test_bad_input_is_named(labels, bits, match):
    with pytest.raises(ValueError, match=match):
        precision_ensemble_vote(labels, bits)


def test_empty_items():
    assert precision_ensemble_vote(np.zeros((3, 0), dtype=int), [4, 8, 16]).shape == (0,)


# -- properties ----------------------------------------------------------------------------
outcomes = st.integers(min_value=-2, max_value=4)


@st.composite
def ensembles(draw, max_members=6, distinct_bits=False):
    m = draw(st.integers(1, max_members))
    n = draw(st.integers(1, 25))
    labels = draw(hnp.arrays(np.int64, (m, n), elements=outcomes))
    if distinct_bits:
        bits = draw(st.lists(st.integers(2, 16), min_size=m, max_size=m, unique=True))
    else:
        bits = draw(st.lists(st.sampled_from([2, 3, 4, 8, 16]), min_size=m, max_size=m))
    return labels, np.array(bits)


@settings(max_examples=200, deadline=None)
@given(ensembles(max_members=1), st.booleans())
def test_one_member_ensemble_equals_member(ens, keep):
    labels, bits = ens
    # the member itself: INVALID stays INVALID, REFUSED stays REFUSED
    np.testing.assert_array_equal(precision_ensemble_vote(labels, bits, keep), labels[0])


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 7), st.integers(0, 5), st.booleans(), st.data())
def test_unanimous_vote_returns_the_label(m, label, keep, data):
    bits = data.draw(st.lists(st.sampled_from([2, 4, 8, 16]), min_size=m, max_size=m))
    labels = np.full((m, 3), label)
    np.testing.assert_array_equal(precision_ensemble_vote(labels, bits, keep), [label] * 3)


@settings(max_examples=200, deadline=None)
@given(ensembles(distinct_bits=True), st.booleans(), st.randoms(use_true_random=False))
def test_permuting_members_with_their_bits_changes_nothing(ens, keep, rnd):
    labels, bits = ens
    perm = list(range(len(bits)))
    rnd.shuffle(perm)
    np.testing.assert_array_equal(precision_ensemble_vote(labels, bits, keep),
                                  precision_ensemble_vote(labels[perm], bits[perm], keep))


@settings(max_examples=200, deadline=None)
@given(ensembles(), st.booleans(), st.randoms(use_true_random=False))
def test_permutation_keeping_equal_precision_order_changes_nothing(ens, keep, rnd):
    labels, bits = ens
    perm = list(range(len(bits)))
    rnd.shuffle(perm)
    # restore the listed order within each precision (the tie rule depends on it)
    by_bits: dict[int, list[int]] = {}
    for i in range(len(bits)):
        by_bits.setdefault(int(bits[i]), []).append(i)
    it = {b: iter(v) for b, v in by_bits.items()}
    perm = [next(it[int(bits[p])]) for p in perm]
    np.testing.assert_array_equal(precision_ensemble_vote(labels, bits, keep),
                                  precision_ensemble_vote(labels[perm], bits[perm], keep))


@settings(max_examples=300, deadline=None)
@given(ensembles(max_members=7), st.booleans())
def test_matches_the_per_item_reference(ens, keep):
    labels, bits = ens
    np.testing.assert_array_equal(precision_ensemble_vote(labels, bits, keep), vote_loop(labels, bits, keep))


@settings(max_examples=150, deadline=None)
@given(ensembles(max_members=6), st.booleans())
def test_result_is_a_usable_member_answer(ens, keep):
    labels, bits = ens
    pred = precision_ensemble_vote(labels, bits, keep)
    for j, p in enumerate(pred):
        assert p in labels[:, j]  # a label, REFUSED or INVALID some member gave
        if p == INVALID:
            assert (labels[:, j] == INVALID).all()
        if p == REFUSED and not keep:
            assert (labels[:, j] < 0).all()


# -- weighted votes ------------------------------------------------------------------------
@settings(max_examples=100, deadline=None)
@given(ensembles(), st.booleans(), st.floats(0.1, 5.0))
def test_equal_weights_are_the_study_rule(ens, keep, w):
    labels, bits = ens
    np.testing.assert_array_equal(weighted_vote(labels, bits, [w] * len(bits), keep),
                                  precision_ensemble_vote(labels, bits, keep))


def test_heavy_member_outvotes_the_majority():
    labels = np.array([[0], [1], [1]])
    assert weighted_vote(labels, [4, 8, 16], [3.0, 1.0, 1.0])[0] == 0
    assert weighted_vote(labels, [4, 8, 16], [1.0, 1.0, 1.0])[0] == 1


def test_zero_weight_member_still_prevents_refused():
    labels = np.array([[2], [INVALID]])
    assert weighted_vote(labels, [4, 16], [0.0, 1.0])[0] == 2


def test_weight_ties_use_the_precision_rule():
    labels = np.array([[0], [1], [1]])
    assert weighted_vote(labels, [16, 8, 4], [2.0, 1.0, 1.0])[0] == 0


@pytest.mark.parametrize("w,match", [([1.0], "weights has 1"), ([1.0, -1.0], ">= 0"), ([1.0, np.nan], "finite")])
def test_bad_weights(w, match):
    with pytest.raises(ValueError, match=match):
        weighted_vote(np.zeros((2, 1), dtype=int), [4, 8], w)


# -- all subsets at once -------------------------------------------------------------------
def test_subset_masks_cover_every_subset_once():
    masks = subset_masks(5)
    assert masks.shape == (31, 5)
    assert len({tuple(r) for r in masks}) == 31
    sizes = masks.sum(axis=1)
    assert (np.diff(sizes) >= 0).all()
    assert subset_masks(5, min_size=2, max_size=3).sum(axis=1).tolist() == [2] * 10 + [3] * 10
    with pytest.raises(ValueError):
        subset_masks(0)


@settings(max_examples=60, deadline=None)
@given(ensembles(max_members=6), st.booleans(), st.integers(1, 9))
def test_subset_votes_equal_one_ensemble_at_a_time(ens, keep, chunk):
    labels, bits = ens
    masks = subset_masks(labels.shape[0])
    got = subset_votes(labels, bits, masks, keep, chunk_items=chunk)
    for s, mask in enumerate(masks):
        np.testing.assert_array_equal(got[s], precision_ensemble_vote(labels[mask], bits[mask], keep))


def test_subset_votes_large_catalogue_path():
    # > 16 members switches to the matrix-product path
    rng = np.random.default_rng(3)
    m, n = 18, 60
    labels = rng.integers(-2, 5, size=(m, n))
    bits = rng.choice([2, 3, 4, 8, 16], size=m)
    masks = rng.random((40, m)) < 0.4
    masks[:, 0] |= ~masks.any(axis=1)
    for keep in (False, True):
        got = subset_votes(labels, bits, masks, keep, chunk_items=17)
        for s, mask in enumerate(masks):
            np.testing.assert_array_equal(got[s], vote_loop(labels[mask], bits[mask], keep))


def test_subset_votes_with_large_label_ids_and_custom_masks():
    rng = np.random.default_rng(1)
    labels = rng.choice([INVALID, REFUSED, 200, 300, 400], size=(4, 50))
    bits = [4, 4, 8, 16]
    masks = np.array([[1, 0, 0, 1], [0, 1, 1, 0], [1, 1, 1, 1]], dtype=bool)
    got = subset_votes(labels, bits, masks)
    assert got.dtype == np.int64
    for s, mask in enumerate(masks):
        np.testing.assert_array_equal(got[s], vote_loop(labels[mask], np.array(bits)[mask]))


def test_subset_votes_rejects_empty_subsets():
    with pytest.raises(ValueError, match="at least one member"):
        subset_votes(np.zeros((2, 3), dtype=int), [4, 8], np.array([[True, False], [False, False]]))


# -- agreement gating ----------------------------------------------------------------------
def test_cost_order_cheapest_first():
    np.testing.assert_array_equal(cost_order([16, 4, 8, 4]), [1, 3, 2, 0])
    np.testing.assert_array_equal(cost_order([16, 4, 8], costs=[1.0, 3.0, 2.0]), [0, 2, 1])


def test_gate_escalates_only_on_disagreement():
    # members listed 4b, 8b, 16b; gate = the 4b and 8b members
    labels = np.array([[0, 1, 0, INVALID],
                       [0, 0, 0, 2],
                       [1, 0, 2, 2]])
    res = gated_vote(labels, [4, 8, 16], gate_size=2)
    np.testing.assert_array_equal(res.escalated, [False, True, False, True])
    np.testing.assert_array_equal(res.consulted[2], [False, True, False, True])
    np.testing.assert_array_equal(res.pred, [0, 0, 0, 2])
    assert res.escalated_fraction == 0.5
    np.testing.assert_allclose(res.member_fraction, [1.0, 1.0, 0.5])
    assert res.relative_cost([4, 8, 16]) == pytest.approx((4 + 8 + 8) / 28)


def test_small_gate_can_differ_from_the_full_vote():
    labels = np.array([[0], [1], [1]])
    res = gated_vote(labels, [4, 8, 16], gate_size=1)
    assert res.pred[0] == 0 and res.full_pred[0] == 1
    assert res.agreement_with_full == 0.0


@settings(max_examples=150, deadline=None)
@given(ensembles(max_members=6), st.booleans(), st.sampled_from(["unanimous", "decisive"]))
def test_default_gating_is_lossless(ens, keep, rule):
    labels, bits = ens
    res = gated_vote(labels, bits, keep_refusal=keep, escalation=rule)
    np.testing.assert_array_equal(res.pred, precision_ensemble_vote(labels, bits, keep))
    assert res.consulted[res.order[0]].all()
    # members run cheapest first: a member runs only where every cheaper one ran
    ordered = res.consulted[res.order]
    assert (ordered[1:] <= ordered[:-1]).all()


def test_decisive_stops_when_the_majority_is_settled():
    labels = np.array([[1, 1], [1, 0], [1, 2], [0, 2], [0, 1]])
    res = gated_vote(labels, [2, 3, 4, 8, 16], escalation="decisive")
    # item 0: three 1s after three members -> 4 and 5 not needed
    np.testing.assert_array_equal(res.consulted[:, 0], [True, True, True, False, False])
    assert res.consulted[:, 1].all()


def test_gate_size_is_checked():
    from codesign.config import ConfigError

    with pytest.raises(ConfigError, match="--gate"):
        gated_vote(np.zeros((2, 1), dtype=int), [4, 8], gate_size=3)
    with pytest.raises(ConfigError, match="unanimous"):
        gated_vote(np.zeros((2, 1), dtype=int), [4, 8], escalation="sometimes")


def test_weighted_ties_survive_float_rounding():
    # 0.1 + 0.2 != 0.3 in floating point; the two sides still tie and the 16-bit member decides
    labels = np.array([[0], [0], [1]])
    assert weighted_vote(labels, [4, 8, 16], [0.1, 0.2, 0.3])[0] == 1
    assert weighted_vote(labels, [16, 8, 4], [0.1, 0.2, 0.3])[0] == 0


# -- edges found by mutation testing (experiments/mutation) ----------------------------------
def test_large_catalogue_ties_are_exact_and_the_member_limit_holds():
    # 30 members: the count term 2 * 2**30 leaves float32 no room for the tie bits (spacing 256);
    # a 2-2 tie between members 22 + 29 (label 1) and 23 + 24 (label 0) goes to member 22
    m = 30
    labels = np.full((m, 2), INVALID)
    labels[[22, 29], 0], labels[[23, 24], 0] = 1, 0
    labels[:, 1] = np.arange(m) % 3
    bits = [4] * m
    got = subset_votes(labels, bits, np.ones((1, m), dtype=bool))  # default item chunk
    np.testing.assert_array_equal(got[0], vote_loop(labels, bits))
    assert got[0, 0] == 1
    assert subset_votes(np.zeros((40, 2), dtype=int), [4] * 40, np.ones((1, 40), dtype=bool)).tolist() == [[0, 0]]
    with pytest.raises(ValueError, match="at most 40 members .* got 41"):
        subset_votes(np.zeros((41, 2), dtype=int), [4] * 41, np.ones((1, 41), dtype=bool))


def test_subset_mask_errors_and_sizes():
    with pytest.raises(ValueError, match="at least one member, got m=0"):
        subset_masks(0)
    with pytest.raises(ValueError, match="30 members make 1073741823 subsets; at most 24"):
        subset_masks(30)
    assert subset_masks(3, min_size=0).shape == (7, 3)  # never the empty subset


def test_subset_votes_defaults_dtypes_and_shapes():
    labels = np.array([[0, 1, 2], [1, 1, 0], [2, 0, 0]])
    bits = [4, 8, 16]
    every = subset_votes(labels, bits)  # default: every non-empty subset, in subset_masks order
    masks = subset_masks(3)
    np.testing.assert_array_equal(every, subset_votes(labels, bits, masks))
    for s, mask in enumerate(masks):
        np.testing.assert_array_equal(every[s], vote_loop(labels[mask], np.array(bits)[mask]))
    assert every.dtype == np.int8  # small label ids
    np.testing.assert_array_equal(subset_votes(labels, bits, masks.astype(int)), every)  # 0/1 masks
    assert subset_votes(np.array([[127, 1]]), [4]).dtype == np.int8
    assert subset_votes(np.array([[128, 1]]), [4]).dtype == np.int64
    one = subset_votes(np.array([[300, 300], [INVALID, 300]]), [4, 8])  # one distinct label, > 127
    assert one.dtype == np.int64 and one.tolist() == [[300, 300], [INVALID, 300], [300, 300]]
    assert subset_votes(np.zeros((3, 0), dtype=int), bits).shape == (7, 0)
    assert subset_votes(labels, bits, np.zeros((0, 3), dtype=bool)).shape == (0, 3)
    with pytest.raises(ValueError, match=r"masks must have shape \(subsets, 3\), got \(2, 2\)"):
        subset_votes(labels, bits, np.ones((2, 2), dtype=bool))
    with pytest.raises(ValueError, match=r"^every subset needs at least one member \(a row of masks is all False\)$"):
        subset_votes(labels, bits, np.array([[True, False, False], [False, False, False]]))


def test_vote_loop_takes_one_member_and_scalar_bits():
    np.testing.assert_array_equal(vote_loop(np.array([0, 2, REFUSED]), 8), [0, 2, REFUSED])


def test_large_catalogue_path_without_usable_votes():
    # 18 members (matrix path), one item per chunk: no label at all, then a single label value
    m = 18
    no_labels = np.full((m, 3), INVALID)
    no_labels[0, 1] = REFUSED  # item 1: a refusal among garbage -> REFUSED; items 0, 2: INVALID
    masks = np.ones((2, m), dtype=bool)
    masks[1, 0] = False  # the second subset lacks the refusing member
    got = subset_votes(no_labels, [4] * m, masks, chunk_items=1)
    assert got.tolist() == [[INVALID, REFUSED, INVALID], [INVALID, INVALID, INVALID]]
    one_label = np.full((m, 2), INVALID)
    one_label[3, 0] = 0
    got = subset_votes(one_label, [4] * m, masks, chunk_items=1)
    assert got.tolist() == [[0, INVALID], [0, INVALID]]
