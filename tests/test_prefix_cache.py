"""Prefix KV cache: reused prefixes give the same logits as a full pass, count only new tokens,
stack into a left-padded batch that decodes like each row alone; both prefill modes of the
generator and the scorer give the same answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from codesign.evaluate.generation import BatchGenerator, OptionScorer, chat_ids, resolve_prefill, sorted_chunks
from codesign.evaluate.prefix_cache import PrefixCache, cache_kwargs, common_prefix, stack_left_padded, stack_trees, tree_layout
from codesign.evaluate.runner import prepare_tasks
from codesign.models import load_model


def _full_logits(model, ids):
    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids])).logits[0]


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2", "tiny-neox"])
def test_reused_prefix_gives_full_pass_logits(name):
    model = load_model(name, seed=0).model
    pc = PrefixCache(model)
    a = list(range(10, 40))
    b = a[:20] + [7, 8, 9, 11]
    ra = pc.prefill(a)
    assert pc.computed_tokens == len(a)
    rb = pc.prefill(b, logits_to_keep=3)  # reuses a's first 20 tokens
    assert pc.computed_tokens == len(a) + 4
    torch.testing.assert_close(ra.logits[-1], _full_logits(model, a)[-1], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(rb.logits, _full_logits(model, b)[-3:], rtol=1e-4, atol=1e-4)
    # The same sequence again: everything but the tokens whose logits are asked for is reused,
    # and a's cache (sliced by b's reuse) was not modified.
    rb2 = pc.prefill(b, logits_to_keep=2)
    assert pc.computed_tokens == len(a) + 4 + 2
    torch.testing.assert_close(rb2.logits, rb.logits[-2:], rtol=1e-4, atol=1e-4)
    assert rb2.length == len(b) and rb2.kv[0][0].shape[-2] == len(b)
    with pytest.raises(ValueError, match="logits_to_keep"):
        pc.prefill([1, 2], logits_to_keep=3)


def test_left_padded_stack_decodes_like_each_row_alone(tiny_llama):
    model = tiny_llama.model
    pc = PrefixCache(model)
    prompts = [list(range(5, 25)), list(range(5, 12)) + [3, 4], [90, 91, 92, 93, 94, 95, 96, 97, 98, 99, 100]]
    rows = [pc.prefill(p) for p in prompts]
    cache, mask = stack_left_padded(rows)
    width = max(map(len, prompts))
    assert mask.shape == (3, width) and mask.sum(1).tolist() == [len(p) for p in prompts]
    nxt = torch.stack([r.logits[-1] for r in rows]).argmax(-1)
    pos = torch.tensor([[len(p)] for p in prompts])
    mask = torch.cat([mask, mask.new_ones((3, 1))], 1)
    with torch.inference_mode():
        step = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=pos, **cache_kwargs(model, cache)).logits
    for i, p in enumerate(prompts):
        ref = _full_logits(model, p + [int(nxt[i])])[-1]
        torch.testing.assert_close(step[i, -1], ref, rtol=1e-4, atol=1e-4)


def test_sorted_chunks_order_and_bounds():
    prompts = [[3, 1], [1, 2, 3], [1, 2], [2] * 50, [1, 2, 4]]
    batches = sorted_chunks(prompts, batch_size=2)
    flat = [i for b in batches for i in b]
    assert flat == [2, 1, 4, 3, 0]  # lexicographic: neighbours share prefixes
    assert all(len(b) <= 2 for b in batches)
    assert all(len(b) * max(len(prompts[i]) for i in b) <= 60 for b in sorted_chunks(prompts, 8, max_tokens=60))
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2 and common_prefix([], [1]) == 0
    assert resolve_prefill("auto", torch.device("cpu")) == "tree"
    assert resolve_prefill("auto", torch.device("cuda", 0)) == "batch"
    with pytest.raises(ValueError, match="allowed"):
        resolve_prefill("fast", torch.device("cpu"))


@pytest.mark.parametrize("task", ["ethics", "ood"])
def test_rows_and_batch_prefill_agree(tiny_llama, data_dir, task):
    tok, model = tiny_llama.tokenizer, tiny_llama.model
    (t, items), = prepare_tasks([task], data_dir, limit=10, seed=1).values()
    prompts = [chat_ids(tok, it.messages) for it in items]
    texts, computed = {}, {}
    for mode in ("tree", "rows", "batch"):
        gen = BatchGenerator(model, tok, prefill=mode, pack_tokens=256)
        for batch in gen.plan(prompts, 4):
            for i, o in zip(batch, gen.generate([prompts[i] for i in batch], 6)):
                texts[mode, i] = o.text
        # tree mode may run a short cached prefix again to use causal attention (cheaper than a 4D
        # mask over a long prompt): those tokens are counted apart
        computed[mode] = gen.stats.computed_prompt_tokens - gen.prefix.recomputed_tokens
        assert gen.stats.prompt_tokens == sum(map(len, prompts))
    for other in ("rows", "batch"):
        assert sum(texts["tree", i] == texts[other, i] for i in range(len(prompts))) >= len(prompts) - 1
    # Tree and rows modes compute each distinct prefix once (rows may pad alike neighbours): no
    # more than the padded batch path, and less than running every prompt in full.
    assert computed["tree"] <= computed["rows"] <= computed["batch"] < sum(map(len, prompts))
    scores = {}
    for mode in ("tree", "rows", "batch"):
        sc = OptionScorer(model, tok, prefill=mode, pack_tokens=256)
        for batch in sc.plan(prompts, 4):
            for i, s in zip(batch, sc.score([prompts[i] for i in batch], [items[i].continuations for i in batch])):
                scores[mode, i] = s
    for i in range(len(prompts)):
        np.testing.assert_allclose(scores["rows", i], scores["batch", i], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(scores["tree", i], scores["batch", i], rtol=1e-4, atol=1e-4)


def test_tree_layout_shares_every_prefix_once():
    seqs = [[1, 2, 3, 4], [1, 2, 3, 5, 6], [1, 2, 7], [1, 2, 7]]
    tokens, positions, paths, anc = tree_layout(seqs, base=1)
    # Slots: 2 3 4 | 5 6 | 7 (the duplicate adds nothing); positions continue after the base.
    assert tokens == [2, 3, 4, 5, 6, 7] and positions == [1, 2, 3, 3, 4, 2]
    assert paths == [[0, 1, 2], [0, 1, 3, 4], [0, 5], [0, 5]]
    expect = torch.zeros(6, 6, dtype=torch.bool)
    for path in paths:
        for j, slot in enumerate(path):
            expect[slot, path[: j + 1]] = True
    assert torch.equal(anc, expect)
    with pytest.raises(ValueError, match="not more than the shared base"):
        tree_layout([[1, 2]], base=2)


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2", "tiny-neox"])
def test_tree_pass_gives_full_pass_logits_and_decodes(name):
    model = load_model(name, seed=0).model
    pc = PrefixCache(model)
    pc.prefill([10, 11, 99])  # all the sequences share [10, 11] with the cache
    seqs = [list(range(10, 25)) + [3, 4, 5], list(range(10, 22)) + [7], list(range(10, 25)) + [3, 9],
            [10, 11, 50, 51, 52], list(range(10, 22)) + [7]]
    before = pc.computed_tokens
    one = pc.tree_passes(seqs, keep=2)
    # One pack: every distinct token of the trie beyond the cached [10, 11] computed once.
    trie = {tuple(s[:k]) for s in seqs for k in range(3, len(s) + 1)}
    assert len(one) == 1 and pc.computed_tokens - before == len(trie)
    pc = PrefixCache(model)
    passes = pc.tree_passes(seqs, keep=2, pack_tokens=8, call_overhead_tokens=0)
    assert len(passes) > 1 and sorted(i for _, rows in passes for i in rows) == list(range(len(seqs)))
    logits = {}
    for tp, rows in passes:
        for j, i in enumerate(rows):
            logits[i] = tp.logits_of(j, 2)
            torch.testing.assert_close(logits[i], _full_logits(model, seqs[i])[-2:], rtol=1e-4, atol=1e-4)
    cache, mask = stack_trees(passes, extra=2)
    assert mask.sum(1).tolist() == [len(s) for s in seqs]
    nxt = torch.stack([logits[i][-1] for i in range(len(seqs))]).argmax(-1)
    pos = torch.tensor([[len(p)] for p in seqs])
    mask = torch.cat([mask, mask.new_ones((len(seqs), 1))], 1)
    with torch.inference_mode():
        step = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=pos, **cache_kwargs(model, cache)).logits
    for i, p in enumerate(seqs):
        torch.testing.assert_close(step[i, -1], _full_logits(model, p + [int(nxt[i])])[-1], rtol=1e-4, atol=1e-4)


def test_prefill_groups_weigh_padding_against_call_overhead(tiny_llama):
    gen = BatchGenerator(tiny_llama.model, tiny_llama.tokenizer, prefill="rows", call_overhead_tokens=32)
    shared = list(range(100, 160))
    short = [shared + [1, i] for i in range(5)]           # alike, short own parts: one padded pass
    long_odd = [shared + [2] + [5 + i % 90 for i in range(199)]]     # 200 own tokens: padding the others would cost more
    prompts = short + long_odd
    groups = gen.prefill_groups(prompts)
    assert [i for g in groups for i in g] == list(range(len(prompts)))  # contiguous, in order
    assert groups[0] == [0, 1, 2, 3, 4] and groups[-1] == [5]
    # Alike own parts of different lengths: padding is worth it only while calls cost something.
    uneven = [shared + [k] * n for k, n in ((1, 1), (2, 9), (3, 17), (4, 25))]
    # First alone (it computes the shared prefix, so the rest need one call), then one padded pass:
    # 93 + (32 + 3 x 25) = 200 tokens' worth, against 224 for one run and 240 for all alone.
    assert gen.prefill_groups(uneven) == [[0], [1, 2, 3]]
    gen.call_overhead_tokens = 0
    assert all(len(g) == 1 for g in gen.prefill_groups(uneven))
    # Grouped prefill gives the same next tokens as one prompt at a time.
    gen.call_overhead_tokens = 32
    grouped = [o.text for o in gen.generate(prompts, 4)]
    gen.call_overhead_tokens = 0
    alone = [o.text for o in gen.generate(prompts, 4)]
    assert grouped == alone


def test_long_single_prompt_pack_runs_causally_from_the_start(tiny_llama):
    """A pack holding one long prompt whose cached prefix is short is run again from position 0
    under causal attention (no 4D mask): same logits and KV as a full pass, the rerun counted apart."""
    from codesign.evaluate.prefix_cache import causal_is_cheaper

    assert causal_is_cheaper(0, 5) and causal_is_cheaper(1, 200) and not causal_is_cheaper(50, 200)
    model = tiny_llama.model
    pc = PrefixCache(model)
    pc.prefill([10, 11, 99])
    long = [10] + [20 + i % 200 for i in range(200)]
    (tp, rows), = pc.tree_passes([long], keep=2)
    assert tp.base == 0 and pc.recomputed_tokens == 1 and pc.computed_tokens == 3 + len(long)
    torch.testing.assert_close(tp.logits_of(0, 2), _full_logits(model, long)[-2:], rtol=1e-4, atol=1e-4)
    # and the cache it leaves serves the next prompt as before
    nxt = long + [5, 6]
    (tp2, _), = pc.tree_passes([nxt], keep=1)
    assert tp2.base == len(long)
    torch.testing.assert_close(tp2.logits_of(0, 1), _full_logits(model, nxt)[-1:], rtol=1e-4, atol=1e-4)
