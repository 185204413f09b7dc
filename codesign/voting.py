"""Precision-ensemble voting: the vectorized core, pure numpy, no store.

The rule (from the study codesign is built on): given ``m`` variants of one dense model at
different precisions and one item,

1. drop INVALID outcomes;
2. drop REFUSED outcomes, except where abstaining is a correct answer (OOD knowledge,
   ``keep_refusal=True``), where REFUSED stays as a label of its own;
3. if nothing remains the ensemble answers REFUSED when some member refused, else INVALID
   (garbage from every member stays garbage: it is never credited as an abstention);
4. otherwise take the unweighted majority label;
5. on a tie, take the label of the highest-precision member among those that voted for one of
   the tied labels (equal precision: the member listed first).

Every function works on whole arrays: ``labels`` has shape ``(members, items)``; loops run over
members (a handful) or label columns (a handful), never over items or subsets.

The tie rule has a closed form used by :func:`subset_votes`: give member ``m`` with tie priority
``p_m`` (0 = highest precision, listed first) the weight ``2**M + 2**(M-1-p_m)``. A label's summed
weight is ``count * 2**M`` plus a bit mask of its voters; the mask is below ``2**M``, so the count
decides first, and between tied labels (disjoint voter sets) the larger mask is the one holding the
highest-priority voter. One matrix product then votes every subset of members at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from codesign.records import DENSE_BITS, INVALID, REFUSED

__all__ = [
    "INVALID",
    "REFUSED",
    "DENSE_BITS",
    "precision_ensemble_vote",
    "no_vote_outcome",
    "weighted_vote",
    "tie_priority",
    "subset_masks",
    "subset_votes",
    "vote_loop",
]


def _check(labels: np.ndarray, bits: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    if labels.ndim == 1:
        labels = labels[None, :]
    if labels.ndim != 2:
        raise ValueError(f"labels must have shape (members, items), got shape {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers (label ids >= 0, INVALID={INVALID}, REFUSED={REFUSED}), "
                         f"got dtype {labels.dtype}")
    bits = np.asarray(bits, dtype=np.int64).reshape(-1)
    if bits.shape[0] != labels.shape[0]:
        raise ValueError(f"bits has {bits.shape[0]} entries but labels has {labels.shape[0]} members")
    if labels.shape[0] == 0:
        raise ValueError("an ensemble needs at least one member")
    bad = labels[(labels < 0) & (labels != INVALID) & (labels != REFUSED)]
    if bad.size:
        raise ValueError(f"labels hold {int(bad[0])}: allowed are label ids >= 0, INVALID={INVALID}, REFUSED={REFUSED}")
    return labels.astype(np.int64, copy=False), bits


def tie_priority(bits: Sequence[int] | np.ndarray) -> np.ndarray:
    """Tie-break rank of each member: 0 = highest precision; equal precision -> listed first.

    Args:
        bits: ``(members,)`` precisions.

    Returns:
        ``(members,)`` int array, a permutation of ``0..members-1``.
    """
    bits = np.asarray(bits, dtype=np.int64).reshape(-1)
    # lexsort sorts by the last key first: by -bits, then by position.
    order = np.lexsort((np.arange(bits.size), -bits))
    prio = np.empty(bits.size, dtype=np.int64)
    prio[order] = np.arange(bits.size)
    return prio


def _compact(labels: np.ndarray, keep_refusal: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map the outcomes that take part in the vote to columns ``0..K-1``.

    Returns ``(columns (members, items) with -1 for dropped outcomes, column -> label (K,), valid mask)``.
    """
    valid = labels >= 0
    if keep_refusal:
        valid |= labels == REFUSED
    values, inverse = np.unique(np.where(valid, labels, INVALID), return_inverse=True)
    inverse = inverse.reshape(labels.shape)
    # np.unique sorted INVALID (-1) above REFUSED (-2) but below label ids; drop its column.
    if np.any(values == INVALID):
        k = int(np.flatnonzero(values == INVALID)[0])
        inverse = np.where(inverse == k, -1, np.where(inverse > k, inverse - 1, inverse))
        values = np.delete(values, k)
    return inverse, values, valid


def _vote_scores(cols: np.ndarray, n_cols: int, member_weight: np.ndarray, prio: np.ndarray):
    """Per (item, label column): summed vote weight and the best (lowest) tie priority of its voters."""
    m, n = cols.shape
    score = np.zeros((n, max(n_cols, 1)), dtype=np.float64)
    best = np.full((n, max(n_cols, 1)), m, dtype=np.int64)
    items = np.arange(n)
    for i in range(m):  # loop over members (few), vectorized over items
        ok = cols[i] >= 0
        idx, c = items[ok], cols[i][ok]
        score[idx, c] += member_weight[i]
        best[idx, c] = np.minimum(best[idx, c], prio[i])
    return score, best


def precision_ensemble_vote(labels: np.ndarray, bits: Sequence[int] | np.ndarray,
                            keep_refusal: bool = False) -> np.ndarray:
    """Vote ``m`` precisions of one model item by item (the study's rule, module docstring).

    Args:
        labels: ``(members, items)`` int array of label ids >= 0, INVALID (-1) or REFUSED (-2).
            A 1-d array is read as a single member.
        bits: ``(members,)`` precision of each member (tie-break: higher wins, then listed first).
        keep_refusal: REFUSED is a label of its own (OOD knowledge, where "I don't know" is right).

    Returns:
        ``(items,)`` int64 array holding a label id; where no member gave a usable answer,
        REFUSED if some member refused, else INVALID.
    """
    return weighted_vote(labels, bits, None, keep_refusal=keep_refusal)


def no_vote_outcome(labels: np.ndarray) -> np.ndarray:
    """What an ensemble answers where nothing remains after dropping outcomes: REFUSED where some
    member refused, else INVALID (every member invalid).

    Args:
        labels: ``(members, items)`` outcome codes.

    Returns:
        ``(items,)`` int64 array of REFUSED / INVALID.
    """
    return np.where((np.asarray(labels) == REFUSED).any(axis=0), REFUSED, INVALID).astype(np.int64)


def weighted_vote(labels: np.ndarray, bits: Sequence[int] | np.ndarray, weights: Sequence[float] | None,
                  keep_refusal: bool = False) -> np.ndarray:
    """Majority vote with per-member weights (``None`` = the unweighted study rule).

    A label's support is the sum of its voters' weights; exact ties fall back on the precision
    tie rule. "Nothing remains" is decided by counting usable answers, not by weight, so a member
    with weight 0 still prevents a REFUSED result while being outvoted by everyone else.

    Args:
        labels: ``(members, items)`` outcome codes.
        bits: ``(members,)`` precisions.
        weights: ``(members,)`` non-negative weights, or ``None`` for one vote each.
        keep_refusal: REFUSED is a label of its own.

    Returns:
        ``(items,)`` int64 labels, or REFUSED / INVALID where nothing remains (:func:`no_vote_outcome`).
    """
    labels, bits = _check(labels, bits)
    m, n = labels.shape
    if weights is None:
        w = np.ones(m, dtype=np.float64)
    else:
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        if w.shape[0] != m:
            raise ValueError(f"weights has {w.shape[0]} entries but labels has {m} members")
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError(f"weights must be finite and >= 0, got {w.tolist()}")
    out = no_vote_outcome(labels)
    if n == 0:
        return out
    cols, values, valid = _compact(labels, keep_refusal)
    if values.size == 0:
        return out
    prio = tie_priority(bits)
    score, best = _vote_scores(cols, values.size, w, prio)
    top = score.max(axis=1, keepdims=True)
    # Among the labels with the top support, the one whose best voter has the lowest priority rank.
    # (relative tolerance: weighted sums in different orders may differ in the last bit)
    tied = (score >= top - 1e-12 * np.maximum(top, 1.0)) & (best < m)
    tied_best = np.where(tied, best, m + 1)
    winner = values[np.argmin(tied_best, axis=1)]
    return np.where(valid.any(axis=0), winner, out)


def subset_masks(m: int, min_size: int = 1, max_size: int | None = None) -> np.ndarray:
    """Membership matrix of all non-empty subsets of ``m`` members, ordered by size then index.

    Returns:
        ``(subsets, m)`` bool array; row ``s`` marks the members of subset ``s``.
        With the defaults there are ``2**m - 1`` rows.
    """
    if m < 1:
        raise ValueError(f"need at least one member, got m={m}")
    if m > 24:
        raise ValueError(f"{m} members make {2**m - 1} subsets; at most 24 members are supported")
    codes = np.arange(1, 2**m, dtype=np.int64)
    mask = ((codes[:, None] >> np.arange(m)) & 1).astype(bool)
    size = mask.sum(axis=1)
    keep = (size >= min_size) & (size <= (max_size if max_size is not None else m))
    mask, size, codes = mask[keep], size[keep], codes[keep]
    order = np.lexsort((codes, size))
    return mask[order]


def subset_votes(labels: np.ndarray, bits: Sequence[int] | np.ndarray, masks: np.ndarray | None = None,
                 keep_refusal: bool = False, chunk_items: int | None = None) -> np.ndarray:
    """Vote every subset of members at once (vectorized over subsets and items).

    Equivalent to ``precision_ensemble_vote(labels[mask], bits[mask])`` for each row ``mask``
    (members keep their relative order, so the listed-first tie-break carries over).

    Up to 16 members, supports of all ``2**m`` subsets are built by doubling (subset ``2**i + t``
    = subset ``t`` plus member ``i``: one vectorized add per member and label) in small item
    chunks that stay in cache; larger catalogues use one matrix product of the weighted
    membership matrix with the one-hot votes per chunk.

    Args:
        labels: ``(members, items)`` outcome codes.
        bits: ``(members,)`` precisions.
        masks: ``(subsets, members)`` bool membership matrix; default all ``2**m - 1`` subsets
            (:func:`subset_masks`).
        keep_refusal: REFUSED is a label of its own.
        chunk_items: items per vectorized block (memory/cache trade-off).

    Returns:
        ``(subsets, items)`` int array of labels, or REFUSED / INVALID where nothing remains
        (:func:`no_vote_outcome` of the subset's members); int8 when labels fit, else int64.
    """
    labels, bits = _check(labels, bits)
    m, n = labels.shape
    masks = subset_masks(m) if masks is None else np.asarray(masks, dtype=bool)
    if masks.ndim != 2 or masks.shape[1] != m:
        raise ValueError(f"masks must have shape (subsets, {m}), got {masks.shape}")
    if masks.shape[0] and not masks.any(axis=1).all():
        raise ValueError("every subset needs at least one member (a row of masks is all False)")
    cols, values, _ = _compact(labels, keep_refusal)
    small = values.size == 0 or (values.min() >= -128 and values.max() <= 127)
    out = np.full((masks.shape[0], n), REFUSED, dtype=np.int8 if small else np.int64)
    if n == 0 or masks.shape[0] == 0:
        return out
    refused = labels == REFUSED
    if m <= 16:
        _subset_votes_doubling(cols, values, tie_priority(bits), masks, refused, out, chunk_items or 256)
    else:
        _subset_votes_matmul(cols, values, tie_priority(bits), masks, refused, out, chunk_items)
    return out


def _member_weights(prio: np.ndarray) -> np.ndarray:
    """``2**m + 2**(m-1-prio)``: count in the high bits, voter bit mask (tie rule) in the low bits."""
    m = prio.size
    return (np.int64(1) << m) + (np.int64(1) << (m - 1 - prio))


def _subset_votes_doubling(cols: np.ndarray, values: np.ndarray, prio: np.ndarray, masks: np.ndarray,
                           refused: np.ndarray, out: np.ndarray, chunk: int) -> None:
    m, n = cols.shape
    k_labels = values.size
    shift = max(1, int(np.ceil(np.log2(max(k_labels, 1)))))
    # support * 2**shift | column must fit; pick the narrowest unsigned type that holds it.
    dtype = np.uint32 if ((m + 1) << m) << shift < 2**32 else np.uint64
    w = _member_weights(prio).astype(dtype)
    codes = (masks.astype(np.int64) << np.arange(m)).sum(axis=1)  # (S,) binary code of each subset
    values_out = values.astype(out.dtype)
    n_all = 1 << m
    support = np.empty((n_all, chunk), dtype=dtype)
    best = np.empty((n_all, chunk), dtype=dtype)
    any_ref = np.empty((n_all, chunk), dtype=bool)
    col_mask = dtype((1 << shift) - 1)
    no_vote = np.array([INVALID, REFUSED], dtype=out.dtype)
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        c = cols[:, a:b]
        ref = any_ref[:, : b - a]
        ref[0] = False
        for i in range(m):  # doubling again: does the subset hold a member that refused?
            h = 1 << i
            np.logical_or(ref[:h], refused[i, a:b], out=ref[h : 2 * h])
        fallback = no_vote[ref[codes].view(np.uint8)]
        if k_labels == 0:
            out[:, a:b] = fallback
            continue
        sup, bst = support[:, : b - a], best[:, : b - a]
        for k in range(k_labels):
            sup[0] = 0
            for i in range(m):  # doubling: subsets containing member i = subsets below it + member i
                h = 1 << i
                np.add(sup[:h], (c[i] == k).astype(dtype) * w[i], out=sup[h : 2 * h])
            # pack the label column into the low bits: one running max gives support and argmax
            # together (supports of different labels never tie unless both are 0).
            np.left_shift(sup, dtype(shift), out=sup)
            sup |= dtype(k)
            if k == 0:
                bst[...] = sup
            else:
                np.maximum(bst, sup, out=bst)
        sel = bst[codes]
        winner = values_out[(sel & col_mask).astype(np.int64)]
        out[:, a:b] = np.where(sel > col_mask, winner, fallback)


def _subset_votes_matmul(cols: np.ndarray, values: np.ndarray, prio: np.ndarray, masks: np.ndarray,
                         refused: np.ndarray, out: np.ndarray, chunk: int | None) -> None:
    m, n = cols.shape
    if m > 40:
        raise ValueError(f"subset_votes supports at most 40 members (exact float64 weights), got {m}")
    k = values.size
    dtype = np.float32 if (m + 1) * 2.0**m < 2.0**24 else np.float64
    weights = (masks * _member_weights(prio).astype(np.float64)[None, :]).astype(dtype)  # (S, M)
    values_out = values.astype(out.dtype)
    chunk = chunk or max(1, int(16_000_000 // max(1, masks.shape[0] * (k + 1))))
    eye = np.eye(k, dtype=dtype)
    member_of = masks.astype(np.float32)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        c = cols[:, start:stop]
        any_ref = (member_of @ refused[:, start:stop].astype(np.float32)) > 0  # (S, n_c)
        fallback = np.where(any_ref, REFUSED, INVALID).astype(out.dtype)
        if k == 0:
            out[:, start:stop] = fallback
            continue
        onehot = np.where(c[..., None] >= 0, eye[np.maximum(c, 0)], 0).astype(dtype)  # (M, n_c, K)
        scores = (weights @ onehot.reshape(m, -1)).reshape(masks.shape[0], stop - start, k)
        best = scores.argmax(axis=2)
        has_vote = scores.max(axis=2) > 0  # any member of the subset gave a usable answer
        out[:, start:stop] = np.where(has_vote, values_out[best], fallback)


def vote_loop(labels: np.ndarray, bits: Sequence[int] | np.ndarray, keep_refusal: bool = False) -> np.ndarray:
    """Reference implementation: a plain Python loop over items, written from the rule's text.

    Slow on purpose; tests check the vectorized functions against it and the benchmark reports
    the speed-up over it.
    """
    labels = np.asarray(labels)
    if labels.ndim == 1:
        labels = labels[None, :]
    bits = [int(b) for b in np.asarray(bits).reshape(-1)]
    out = []
    for j in range(labels.shape[1]):
        votes = []  # (label, member index)
        for i in range(labels.shape[0]):
            lab = int(labels[i, j])
            if lab == INVALID or (lab == REFUSED and not keep_refusal):
                continue
            votes.append((lab, i))
        if not votes:  # nothing usable: an abstention only if some member abstained
            out.append(REFUSED if any(int(x) == REFUSED for x in labels[:, j]) else INVALID)
            continue
        counts: dict[int, int] = {}
        for lab, _ in votes:
            counts[lab] = counts.get(lab, 0) + 1
        top = max(counts.values())
        tied = {lab for lab, c in counts.items() if c == top}
        if len(tied) == 1:
            out.append(tied.pop())
            continue
        # highest precision among voters of the tied labels; equal precision -> first listed
        best_i = None
        for lab, i in votes:
            if lab in tied and (best_i is None or bits[i] > bits[best_i]):
                best_i = i
        out.append(int(labels[best_i, j]))
    return np.array(out, dtype=np.int64)
