"""Prompt prefill with a reusable prefix KV cache, and left-padded stacking of per-row caches.

Evaluation prompts share long prefixes: the chat template's system prompt, a task's instruction,
few-shot demonstrations, and (in log-likelihood mode) the whole prompt across its answer options.
:class:`PrefixCache` keeps the key/value tensors of the last sequence it ran; the next sequence
reuses them up to their longest common prefix and computes only its own tokens. Fed prompts in
lexicographic order, every distinct prefix is computed once: the token count of a trie of the
prompts, the least any exact method computes.

On a CPU the prompt pass is compute-bound, so the fastest prefill computes no token twice and no
padding, in as few calls as possible (each call streams all the weights): :meth:`PrefixCache.tree_pass`
packs a batch's prompts, past the cached prefix, as one prefix tree and runs it in one call under
a 4D mask (each token attends to its ancestors, at its own position); :func:`stack_trees` (or
:func:`stack_left_padded` for rows run one at a time) then joins the rows' caches into one
left-padded batch for the (memory-bound) decode steps. Slicing a cache to a
shorter prefix is a view and the model appends with ``torch.cat``, so reuse never copies or
mutates stored tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

KV = list[tuple["torch.Tensor", "torch.Tensor"]]  # noqa: F821  one (keys, values) pair per layer


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token sequences."""
    n = min(len(a), len(b))
    k = 0
    while k < n and a[k] == b[k]:
        k += 1
    return k


def cache_kwargs(model, cache) -> dict:
    """``{name: cache}`` for the model's forward: transformers 5.24 renamed ``past_key_values`` to
    ``cache`` (the old name still works but warns on every call); older versions know only the old one."""
    import inspect

    params = inspect.signature(model.forward).parameters
    return {"cache": cache} if "cache" in params else {"past_key_values": cache}


def cache_out(out):
    """The KV cache a forward pass returned (``cache`` in transformers >= 5.24, else ``past_key_values``)."""
    cache = out.get("cache") if hasattr(out, "get") else None
    return cache if cache is not None else out.past_key_values


def kv_of(cache) -> KV | None:
    """The per-layer ``(keys, values)`` of a transformers ``DynamicCache`` (each ``(b, heads, len, dim)``),
    or ``None`` for a cache this module cannot slice (sliding-window or recurrent layers)."""
    layers = getattr(cache, "layers", None)
    if not layers:
        return None
    out = []
    for layer in layers:
        if getattr(layer, "is_sliding", False) or not hasattr(layer, "keys") or layer.keys is None:
            return None
        out.append((layer.keys, layer.values))
    return out


def sliceable(model) -> bool:
    """Whether :class:`PrefixCache` can slice this model's KV cache (full-attention ``DynamicCache``
    layers only), found by one one-token forward pass."""
    import torch

    device = next(model.parameters()).device
    with torch.inference_mode():
        out = model(input_ids=torch.zeros((1, 1), dtype=torch.long, device=device), use_cache=True, logits_to_keep=1)
    return kv_of(cache_out(out)) is not None


def _buffered_layer_class():
    """A ``DynamicLayer`` that appends into a preallocated buffer.

    transformers' ``DynamicLayer`` appends with ``torch.cat``, copying the whole cache at every
    decode step (for 16 rows of 700 tokens, ~0.5 GB per step on SmolLM2); this layer writes the new
    step in place and grows its buffer geometrically when full.
    """
    from transformers.cache_utils import DynamicLayer

    class BufferedLayer(DynamicLayer):
        def __init__(self, key_buf, value_buf, n: int):
            """Wrap buffers ``(b, heads, capacity, dim)`` whose first ``n`` positions are filled."""
            super().__init__()
            self._k, self._v, self._n = key_buf, value_buf, n
            self.dtype, self.device = key_buf.dtype, key_buf.device
            self.is_initialized = True
            self._view()

        def _view(self):
            self.keys = self._k[..., : self._n, :]
            self.values = self._v[..., : self._n, :]

        def update(self, key_states, value_states, *args, **kwargs):
            k = key_states.shape[-2]
            if self._n + k > self._k.shape[-2]:
                cap = max(2 * self._k.shape[-2], self._n + k)
                grown_k = self._k.new_empty(self._k.shape[:2] + (cap,) + self._k.shape[3:])
                grown_v = self._v.new_empty(self._v.shape[:2] + (cap,) + self._v.shape[3:])
                grown_k[..., : self._n, :] = self.keys
                grown_v[..., : self._n, :] = self.values
                self._k, self._v = grown_k, grown_v
            self._k[..., self._n: self._n + k, :] = key_states
            self._v[..., self._n: self._n + k, :] = value_states
            self._n += k
            self._view()
            return self.keys, self.values

        def batch_select_indices(self, indices):
            self._k, self._v = self._k[indices, ...], self._v[indices, ...]
            self._view()

        def crop(self, max_length: int) -> None:
            self._n = max_length if max_length >= 0 else max(0, self._n + max_length)
            self._view()

    return BufferedLayer


def _empty_like_with(t, length: int):
    return t.new_empty(t.shape[:2] + (length,) + t.shape[3:])


def buffered_cache(buffers: list[tuple["torch.Tensor", "torch.Tensor"]], n: int):  # noqa: F821
    """A ``DynamicCache`` over per-layer ``(keys, values)`` buffers whose first ``n`` positions hold
    the cache; later positions are room for appends. Where transformers' cache layers are not the
    kind this module knows, a plain ``DynamicCache`` of the first ``n`` positions (appends copy)."""
    from transformers import DynamicCache

    try:
        layer_cls = _buffered_layer_class()
        cache = DynamicCache()
        cache.layers = [layer_cls(k, v, n) for k, v in buffers]
        return cache
    except (AttributeError, TypeError, ImportError):
        return DynamicCache(ddp_cache_data=[(k[..., :n, :], v[..., :n, :]) for k, v in buffers])


def cache_from(kv: KV, extra: int = 0):
    """A ``DynamicCache`` holding a copy of ``kv`` with room for ``extra`` more tokens per layer."""
    n = kv[0][0].shape[-2]
    buffers = []
    for k, v in kv:
        kb, vb = _empty_like_with(k, n + extra), _empty_like_with(v, n + extra)
        kb[..., :n, :] = k
        vb[..., :n, :] = v
        buffers.append((kb, vb))
    return buffered_cache(buffers, n)


def plan_runs(prompts: Sequence[Sequence[int]], cached: Sequence[int], call_overhead_tokens: int) -> list[list[int]]:
    """Split prompts (in lexicographic order) into contiguous runs that share one padded pass.

    Each model call costs a fixed overhead (streaming the weights: ``call_overhead_tokens``
    tokens' worth of compute) on top of its tokens. A prompt alone costs one call for the tokens
    the prefix cache lacks; a run of ``n`` costs one call for the part of its common prefix the
    cache lacks (if any) plus one for ``n x (longest - prefix)`` padded tokens. The split with the
    least total cost is found exactly by dynamic programming over the run boundaries (``O(n^2)``
    for ``n`` prompts; the cache is taken to hold the previous prompt, as after a lone prompt, and
    ``cached`` before the first).
    """
    n = len(prompts)
    c0 = call_overhead_tokens
    lens = [len(p) for p in prompts]
    prev_lcp = [common_prefix(cached, prompts[0]) if n else 0] + \
        [common_prefix(prompts[i - 1], prompts[i]) for i in range(1, n)]
    best = [0.0] + [float("inf")] * n
    start = [0] * (n + 1)
    for i in range(n):  # a run prompts[i..j]
        shared, longest = lens[i] - 1, lens[i]
        for j in range(i, n):
            if j == i:
                cost = c0 + lens[i] - min(prev_lcp[i], lens[i] - 1)
            else:
                # Each row keeps at least one own token (its logits come from the padded pass).
                shared = min(shared, prev_lcp[j], lens[j] - 1)
                longest = max(longest, lens[j])
                ext = shared - min(shared, prev_lcp[i])
                cost = (c0 if ext else 0) + ext + c0 + (j - i + 1) * (longest - shared)
            if best[i] + cost < best[j + 1]:
                best[j + 1], start[j + 1] = best[i] + cost, i
    runs, j = [], n
    while j > 0:
        runs.append(list(range(start[j], j)))
        j = start[j]
    return runs[::-1]


@dataclass
class Part:
    """Prompts run together: their KV (``(n, heads, L, dim)`` per layer), attention mask ``(n, L)``
    (0 on padding) and last-position logits ``(n, vocab)``."""

    kv: KV
    mask: "torch.Tensor"  # noqa: F821
    logits: "torch.Tensor"  # noqa: F821


@dataclass
class Prefilled:
    """One row after its prompt pass: logits of its last ``k`` positions ``(k, vocab)`` and its KV
    (``(1, heads, len, dim)`` per layer)."""

    logits: "torch.Tensor"  # noqa: F821
    kv: KV
    length: int


class PrefixCache:
    """Prefill one sequence at a time, reusing the KV of the previous sequence's common prefix.

    Args:
        model: a Hugging Face causal LM; ``supported`` says (probed once, :func:`sliceable`) whether
            its cache is a ``DynamicCache`` of full-attention layers this class can slice. Reuse
            needs it; without it every method raises ``NotImplementedError`` rather than reuse.
    """

    def __init__(self, model):
        self.model = model
        self.device = next(model.parameters()).device
        self.ids: list[int] = []
        self.kv: KV | None = None
        self.computed_tokens = 0  # prompt tokens actually run through the model
        self.recomputed_tokens = 0  # of those, cached ones run again for causal attention (tree_pass)
        self.supported = sliceable(model)

    def prefill(self, ids: Sequence[int], logits_to_keep: int = 1) -> Prefilled:
        """Run ``ids`` (batch 1), reusing the cached prefix; at least the last ``logits_to_keep``
        tokens are computed so their logits exist. Returns their logits and the full KV."""
        import torch

        ids = [int(t) for t in ids]
        if not 1 <= logits_to_keep <= len(ids):
            raise ValueError(f"logits_to_keep must be in [1, {len(ids)}], got {logits_to_keep}")
        reuse = 0
        if self.kv is not None and self.supported:
            reuse = min(common_prefix(self.ids, ids), len(ids) - logits_to_keep)
        past = cache_from([(k[..., :reuse, :], v[..., :reuse, :]) for k, v in self.kv], len(ids) - reuse) \
            if reuse else None
        x = torch.tensor([ids[reuse:]], dtype=torch.long, device=self.device)
        pos = torch.arange(reuse, len(ids), device=self.device)[None]
        with torch.inference_mode():
            out = self.model(input_ids=x, position_ids=pos, **cache_kwargs(self.model, past), use_cache=True,
                             logits_to_keep=logits_to_keep)
        self.computed_tokens += len(ids) - reuse
        kv = kv_of(cache_out(out))
        if kv is None:
            self.supported, self.ids, self.kv = False, [], None
            raise NotImplementedError("this model's KV cache has sliding-window or recurrent layers")
        self.ids, self.kv = ids, kv
        return Prefilled(out.logits[0, -logits_to_keep:], kv, len(ids))

    def padded_pass(self, prompts: Sequence[Sequence[int]], shared: int, extra: int, pad_id: int):
        """The prompts' first ``shared`` tokens (common to all) from this cache, repeated over the
        batch, then every row's own tokens in one left-padded pass (padding sits between the shared
        prefix and each row's tokens; positions skip it). Returns the model's cache (room for
        ``extra`` more steps), the mask ``(b, shared + width)`` and the last logits ``(b, vocab)``."""
        import torch

        b = len(prompts)
        width = max(len(p) for p in prompts) - shared
        ids = torch.full((b, width), pad_id, dtype=torch.long)
        mask = torch.zeros((b, shared + width), dtype=torch.long)
        mask[:, :shared] = 1
        for i, p in enumerate(prompts):
            suffix = list(p[shared:])
            ids[i, width - len(suffix):] = torch.tensor(suffix, dtype=torch.long)
            mask[i, shared + width - len(suffix):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)[:, shared:]
        cache = None
        if shared:
            kv = self.kv_for(prompts[0][:shared])
            cache = cache_from([(k.expand(b, -1, -1, -1), v.expand(b, -1, -1, -1)) for k, v in kv], width + extra)
        with torch.inference_mode():
            # logits_to_keep=1: only the last position's logits (b x vocab), not b x len x vocab.
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, **cache_kwargs(self.model, cache),
                             use_cache=True, logits_to_keep=1)
        self.computed_tokens += b * width
        return cache_out(out), mask, out.logits[:, -1, :]

    def prefill_many(self, prompts: Sequence[Sequence[int]], call_overhead_tokens: int, pad_id: int) -> list[Part]:
        """Prompts (best in lexicographic order) in the runs :func:`plan_runs` picks: a lone prompt
        through :meth:`prefill`, a run as one :meth:`padded_pass` after its common prefix."""
        import torch

        parts = []
        for run in plan_runs(prompts, self.ids, call_overhead_tokens):
            if len(run) == 1:
                r = self.prefill(prompts[run[0]])
                parts.append(Part(r.kv, torch.ones((1, r.length), dtype=torch.long, device=self.device),
                                  r.logits[-1:]))
                continue
            rows = [prompts[i] for i in run]
            shared = min(min(common_prefix(rows[0], r) for r in rows[1:]), min(len(r) for r in rows) - 1)
            cache, mask, logits = self.padded_pass(rows, shared, 0, pad_id)
            kv = kv_of(cache)
            if kv is None:
                self.supported = False
                raise NotImplementedError("this model's KV cache has sliding-window or recurrent layers")
            parts.append(Part(kv, mask, logits))
        return parts

    def tree_pass(self, seqs: Sequence[Sequence[int]], keep: Sequence[int] | int = 1) -> TreePass:
        """All ``seqs`` in one model call: the prefix they share with the cached sequence comes from
        the cache, the rest is packed as a prefix tree (:func:`tree_layout`) and run with a 4D mask
        that lets each slot see its ancestors only, at its own position. No token is computed twice
        and none is padding. Logits are kept at each sequence's last ``keep`` positions.

        A pack that is one sequence (a long prompt: the usual case past ``pack_tokens``) whose
        cached prefix is short runs from position 0 without a mask instead (:func:`causal_is_cheaper`):
        the model's causal attention skips the masked half that a 4D mask makes it compute.

        Best fed in lexicographic order. Afterwards the cache holds the last sequence.
        """
        import torch

        seqs = [[int(t) for t in s] for s in seqs]
        keeps = [keep] * len(seqs) if isinstance(keep, int) else [int(k) for k in keep]
        base = 0
        if self.kv is not None and self.supported:
            base = min(min(common_prefix(self.ids, s), len(s) - k) for s, k in zip(seqs, keeps))
        causal = len(seqs) == 1 and causal_is_cheaper(base, len(seqs[0]) - base)
        if causal:
            self.recomputed_tokens += base
            base = 0
        tokens, positions, paths, anc = tree_layout(seqs, base)
        n = len(tokens)
        mask = None
        if not causal:
            dtype = next(self.model.parameters()).dtype
            allowed = torch.ones((n, base + n), dtype=torch.bool)
            allowed[:, base:] = anc
            # Additive float mask: what eager attention adds and SDPA accepts alike.
            mask = torch.zeros((1, 1, n, base + n), dtype=dtype)
            mask.masked_fill_(~allowed[None, None], torch.finfo(dtype).min)
            mask = mask.to(self.device)
        kept_slots = sorted({s for p, k in zip(paths, keeps) for s in p[-k:]})
        past = cache_from([(k[..., :base, :], v[..., :base, :]) for k, v in self.kv], n) if base else None
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([tokens], device=self.device),
                             position_ids=torch.tensor([positions], device=self.device),
                             attention_mask=mask, **cache_kwargs(self.model, past), use_cache=True,
                             logits_to_keep=torch.tensor(kept_slots, device=self.device))
        self.computed_tokens += n
        kv = kv_of(cache_out(out))
        if kv is None:
            self.supported, self.ids, self.kv = False, [], None
            raise NotImplementedError("this model's KV cache has sliding-window or recurrent layers")
        tp = TreePass(kv, base, paths, out.logits[0], {s: r for r, s in enumerate(kept_slots)})
        last = torch.tensor(tp.index(len(seqs) - 1), device=self.device)
        self.ids, self.kv = seqs[-1], [(k.index_select(2, last), v.index_select(2, last)) for k, v in kv]
        return tp

    def tree_passes(self, seqs: Sequence[Sequence[int]], keep: Sequence[int] | int = 1, pack_tokens: int = 512,
                    call_overhead_tokens: int = 32) -> list[tuple[TreePass, list[int]]]:
        """``seqs`` in lexicographic order through :meth:`tree_pass`, in packs of at most about
        ``pack_tokens`` computed tokens: attention inside a pack is computed densely under the tree
        mask, so one huge pack wastes attention work, while every call costs
        ``call_overhead_tokens`` tokens' worth (streaming the weights). A sequence joins the open
        pack when that costs no more than a pack of its own would.

        Returns each pass with the indices (into ``seqs``) of the sequences it holds, in its order.
        """
        keeps = [keep] * len(seqs) if isinstance(keep, int) else list(keep)
        order = sorted(range(len(seqs)), key=lambda i: list(seqs[i]))
        packs: list[list[int]] = []
        cur: list[int] = []
        cur_cost, cached = 0, self.ids
        for i in order:
            if cur:
                joined = pack_cost(cached, [seqs[j] for j in cur + [i]], [keeps[j] for j in cur + [i]])
                alone = call_overhead_tokens + pack_cost(seqs[cur[-1]], [seqs[i]], [keeps[i]])
                if joined <= pack_tokens and joined - cur_cost <= alone:
                    cur.append(i)
                    cur_cost = joined
                    continue
                packs.append(cur)
                cached = seqs[cur[-1]]  # what the cache holds when the next pack runs
            cur, cur_cost = [i], pack_cost(cached, [seqs[i]], [keeps[i]])
        if cur:
            packs.append(cur)
        return [(self.tree_pass([seqs[i] for i in pk], [keeps[i] for i in pk]), pk) for pk in packs]

    def kv_for(self, ids: Sequence[int]) -> KV:
        """KV of exactly ``ids`` (``(1, heads, len, dim)`` per layer), computing only what the cache
        lacks (nothing when ``ids`` is a prefix of the cached sequence)."""
        ids = [int(t) for t in ids]
        if self.kv is not None and self.supported and common_prefix(self.ids, ids) == len(ids):
            return [(k[..., : len(ids), :], v[..., : len(ids), :]) for k, v in self.kv]
        return self.prefill(ids).kv


#: Prompt-pass cost of one token's linear layers in attention (query, key) pairs: SmolLM2-135M on
#: one CPU thread, 4,096 tokens from position 0: 26.6 s causal vs 36.5 s under a 4D mask (a full
#: 4,096^2 pairs computed instead of half), i.e. ~1.2 us per pair and ~4.1 ms per token
#: (experiments/eval_speed/README.md, "DecodingTrust throughput").
PAIRS_PER_TOKEN = 3500


def causal_is_cheaper(base: int, n: int, pairs_per_token: int = PAIRS_PER_TOKEN) -> bool:
    """Whether one sequence of ``base`` cached + ``n`` new tokens costs less run from position 0 under
    causal attention (its ``base`` tokens again, half the attention pairs of ``base + n``) than as
    ``n`` new tokens under a 4D mask, which computes every pair ``n x (base + n)``."""
    if base == 0:
        return True
    masked = n * (base + n)
    causal = base * pairs_per_token + (base + n) * (base + n + 1) // 2
    return causal < masked


def tree_layout(seqs: Sequence[Sequence[int]], base: int):
    """Pack the tokens of ``seqs`` past their shared cached prefix ``base`` as a prefix tree.

    Each sequence shares its longest common prefix with the one before it (in lexicographic order,
    the longest it shares with any earlier one), so every distinct prefix gets one packed slot.

    Returns:
        ``tokens`` and ``positions`` (lists of the packed slots' token ids and positions),
        ``paths`` (per sequence, the packed slot of each of its positions ``base..len-1``) and
        ``ancestors``, a bool ``(n, n)`` tensor: slot ``s`` may attend to slot ``t`` iff ``t`` is
        ``s`` or one of its ancestors in the tree (every slot also sees all ``base`` cached positions).
    """
    import torch

    tokens: list[int] = []
    positions: list[int] = []
    paths: list[list[int]] = []
    owners: list[tuple[int, int]] = []  # (sequence, first new position) that created new slots
    prev: Sequence[int] = ()
    prev_path: list[int] = []
    for i, seq in enumerate(seqs):
        if len(seq) <= base:
            raise ValueError(f"sequence {i} has {len(seq)} tokens, not more than the shared base {base}")
        share = max(base, min(common_prefix(prev, seq), len(seq))) if i else base
        path = prev_path[: share - base]
        start = len(tokens)
        tokens.extend(int(t) for t in seq[share:])
        positions.extend(range(share, len(seq)))
        path = path + list(range(start, len(tokens)))
        paths.append(path)
        owners.append((i, share - base))
        prev, prev_path = seq, path
    n = len(tokens)
    anc = torch.zeros((n, n), dtype=torch.bool)
    for (i, first), path in zip(owners, paths):
        m = len(path)
        if first >= m:
            continue
        p = torch.tensor(path, dtype=torch.long)
        tri = torch.ones((m, m), dtype=torch.bool).tril()[first:]
        anc[p[first:, None], p[None, :]] = tri
    return tokens, positions, paths, anc


def pack_cost(cached: Sequence[int], seqs: Sequence[Sequence[int]], keeps: Sequence[int]) -> int:
    """Tokens :meth:`PrefixCache.tree_pass` computes for ``seqs`` (in order) when the cache holds
    ``cached``: the tree's slots past the prefix all of them share with the cache."""
    base = min(min(common_prefix(cached, s), len(s) - k) for s, k in zip(seqs, keeps))
    n = len(seqs[0]) - base
    for a, b in zip(seqs, seqs[1:]):
        n += len(b) - max(base, common_prefix(a, b))
    return n


@dataclass
class TreePass:
    """One packed prefix-tree pass: the model's KV (``(1, heads, base + n, dim)`` per layer), the
    cached prefix length ``base``, per sequence its packed slots ``paths[i]`` (positions ``base..``)
    and the kept logits ``(k, vocab)`` at packed slots ``kept`` (a dict slot -> row)."""

    kv: KV
    base: int
    paths: list[list[int]]
    logits: "torch.Tensor"  # noqa: F821
    kept: dict[int, int]

    def logits_of(self, i: int, k: int = 1) -> "torch.Tensor":  # noqa: F821
        """Logits ``(k, vocab)`` at sequence ``i``'s last ``k`` positions."""
        return self.logits[[self.kept[s] for s in self.paths[i][-k:]]]

    def index(self, i: int) -> list[int]:
        """Positions in :attr:`kv` of sequence ``i``'s tokens, in order."""
        return list(range(self.base)) + [self.base + s for s in self.paths[i]]


def stack_parts(parts: Sequence[tuple[KV, "torch.Tensor"]], extra: int = 0):  # noqa: F821
    """Join batch caches ``(kv, mask)`` (``kv`` per layer ``(n_i, heads, L_i, dim)``, ``mask``
    ``(n_i, L_i)``) into one, each left-padded to the widest ``L``, with room for ``extra`` decode
    steps. Returns ``(cache, mask)`` with ``mask`` ``(sum n_i, L)`` (0 on padding)."""
    import torch

    width = max(int(m.shape[1]) for _, m in parts)
    b = sum(int(m.shape[0]) for _, m in parts)
    kv: KV = []
    for layer in range(len(parts[0][0])):
        k0, v0 = parts[0][0][layer]
        keys = k0.new_empty((b, k0.shape[1], width + extra, k0.shape[3]))
        values = v0.new_empty((b, v0.shape[1], width + extra, v0.shape[3]))
        r = 0
        for pkv, m in parts:
            k, v = pkv[layer]
            n, pad = int(m.shape[0]), width - int(m.shape[1])
            # Padding is masked out, but must hold finite numbers: 0 x NaN is NaN in the softmax product.
            keys[r:r + n, :, :pad] = 0
            values[r:r + n, :, :pad] = 0
            keys[r:r + n, :, pad:width] = k[..., : m.shape[1], :]
            values[r:r + n, :, pad:width] = v[..., : m.shape[1], :]
            r += n
        kv.append((keys, values))
    mask = torch.zeros((b, width), dtype=torch.long, device=keys.device)
    r = 0
    for _, m in parts:
        mask[r:r + m.shape[0], width - m.shape[1]:] = m
        r += m.shape[0]
    return buffered_cache(kv, width), mask


def stack_left_padded(rows: Sequence[Prefilled], extra: int = 0):
    """Join single-row caches into one batch, left-padded to the longest row.

    Returns ``(cache, mask)``: a cache of ``(b, heads, L, dim)`` tensors with zeros in the padding
    and room for ``extra`` decode steps, and the ``(b, L)`` attention mask (0 on padding),
    ``L = max(row.length)``.
    """
    import torch

    return stack_parts([(r.kv, torch.ones((1, r.length), dtype=torch.long, device=r.kv[0][0].device))
                        for r in rows], extra)


def stack_trees(passes: Sequence[tuple[TreePass, Sequence[int]]], extra: int = 0):
    """Join the sequences of tree passes (each with the indices of the rows it holds in the batch)
    into one left-padded batch cache with room for ``extra`` decode steps, as :func:`stack_parts`.
    Returns ``(cache, mask)``, ``mask`` ``(b, L)`` with 0 on padding."""
    import torch

    lens = {r: tp.base + len(tp.paths[i]) for tp, rows in passes for i, r in enumerate(rows)}
    b, width = len(lens), max(lens.values())
    dev = passes[0][0].kv[0][0].device
    mask = torch.zeros((b, width), dtype=torch.long, device=dev)
    for r, n in lens.items():
        mask[r, width - n:] = 1
    # Per batch row: its pass and the KV positions to copy (a slice where they are contiguous, as
    # for a pass holding one sequence; else an index for index_select). Row-by-row slice copies
    # cost a fraction of one advanced-index gather + scatter of the padded batch.
    sources = []
    for tp, rows in passes:
        for j, r in enumerate(rows):
            ix = tp.index(j)
            src = slice(ix[0], ix[-1] + 1) if ix[-1] - ix[0] == len(ix) - 1 else torch.tensor(ix, device=dev)
            sources.append((tp, r, src, len(ix)))
    kv: KV = []
    for layer in range(len(passes[0][0].kv)):
        k0 = passes[0][0].kv[layer][0]
        keys = k0.new_empty((b, k0.shape[1], width + extra, k0.shape[3]))
        values = torch.empty_like(keys)
        for tp, r, src, n in sources:
            k, v = tp.kv[layer]
            # Padding is masked out, but must hold finite numbers: 0 x NaN is NaN in the softmax product.
            keys[r, :, : width - n].zero_()
            values[r, :, : width - n].zero_()
            if isinstance(src, slice):
                keys[r, :, width - n: width].copy_(k[0, :, src])
                values[r, :, width - n: width].copy_(v[0, :, src])
            else:
                keys[r, :, width - n: width].copy_(k[0].index_select(1, src))
                values[r, :, width - n: width].copy_(v[0].index_select(1, src))
        kv.append((keys, values))
    return buffered_cache(kv, width), mask
