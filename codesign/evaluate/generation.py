"""Batched greedy generation and log-likelihood scoring of label options.

:class:`BatchGenerator` runs its own decode loop instead of ``model.generate`` so that a
sequence that has finished (EOS or a stop string) leaves the batch at once: its rows are
dropped from the KV cache, so a batch costs as much as its still-running members, not its
longest one. Prompts are left-padded (so every row's next token sits in the last column) and
get explicit position ids, so padding does not shift positions.

Prompts share long prefixes (the chat template's system prompt, the task's instruction,
few-shot demonstrations); a :class:`~codesign.evaluate.prefix_cache.PrefixCache` computes each
distinct prefix once. On a CPU, where the prompt pass is compute-bound, that (not batching) is
most of the speed-up: a batch's prompts (in lexicographic order) are packed as one prefix tree
per model call, each distinct token once and no padding, and then decoded together
(``prefill="tree"``; ``"rows"`` runs them one at a time through the cache instead). On a GPU a
batch's rows run in one padded pass after their common prefix (``prefill="batch"``, batches
from :func:`plan_batches`).

Each way of prefilling is a :class:`Prefill` strategy (:class:`TreePrefill`, :class:`RowsPrefill`,
:class:`BatchPrefill`), chosen once by the :class:`Engine` that :class:`BatchGenerator` and
:class:`OptionScorer` share: a model whose KV cache the prefix cache cannot slice (sliding-window
or recurrent layers, found by one probe when the engine is built) gets :class:`BatchPrefill`.

Padding and prefix reuse change the shapes of the matrix products, hence the floating-point
rounding, so a batched greedy answer can (rarely) differ from a batch-1 answer; the benchmark
in ``experiments/eval_speed`` measures how often.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from codesign.evaluate.prefix_cache import (PrefixCache, cache_kwargs, cache_out, common_prefix, plan_runs, stack_parts,
                                            stack_trees)

if TYPE_CHECKING:
    import torch

DEFAULT_STOP = ("\n\n",)
PREFILL_MODES = ("auto", "tree", "rows", "batch")


def check_prefill(mode: str) -> str:
    if mode not in PREFILL_MODES:
        from codesign.config import ConfigError

        raise ConfigError(f"--prefill: {mode!r} is not allowed (allowed: {list(PREFILL_MODES)})")
    return mode


def resolve_prefill(mode: str, device) -> str:
    """``auto`` → ``tree`` on CPU (compute-bound prompt pass), ``batch`` on accelerators."""
    check_prefill(mode)
    if mode != "auto":
        return mode
    return "tree" if getattr(device, "type", str(device)) == "cpu" else "batch"


@dataclass
class GenOutput:
    """One generated answer: text (stop string removed), token counts, seconds until it finished."""

    text: str
    prompt_tokens: int
    gen_tokens: int
    latency_s: float


@dataclass
class RunStats:
    """Accumulated timing of a run (prefill = prompt forward passes, decode = one-token steps)."""

    prompt_tokens: int = 0
    computed_prompt_tokens: int = 0  # prompt tokens run through the model (the rest came from a cache)
    gen_tokens: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    decode_steps: int = 0
    n_items: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def prompt_tok_s(self) -> float | None:
        return self.prompt_tokens / self.prefill_s if self.prefill_s > 0 else None

    @property
    def gen_tok_s(self) -> float | None:
        return self.gen_tokens / self.decode_s if self.decode_s > 0 else None

    @property
    def tpot_ms(self) -> float | None:
        """Mean wall time of one decode step (each running sequence gains one token per step)."""
        return 1000 * self.decode_s / self.decode_steps if self.decode_steps else None


def chat_ids(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of a chat prompt ending with the assistant turn's opening (the model's chat template).

    A template that rejects a system role (some do) gets the system text prepended to the first
    user turn instead.
    """
    try:
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    except Exception:
        if messages and messages[0]["role"] == "system":
            sys_text, rest = messages[0]["content"], [dict(m) for m in messages[1:]]
            rest[0]["content"] = sys_text + "\n\n" + rest[0]["content"]
            ids = tokenizer.apply_chat_template(rest, add_generation_prompt=True, tokenize=True)
        else:
            raise
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return [int(i) for i in ids]


def eos_ids(tokenizer, model) -> set[int]:
    """Token ids that end an answer: the tokenizer's EOS, the generation config's, and ChatML's end."""
    out: set[int] = set()
    for src in (getattr(tokenizer, "eos_token_id", None), getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        if src is None:
            continue
        out |= set(src) if isinstance(src, (list, tuple)) else {int(src)}
    for tok in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>"):
        tid = tokenizer.convert_tokens_to_ids(tok) if tok in tokenizer.get_vocab() else None
        if tid is not None and tid >= 0:
            out.add(int(tid))
    return out


def length_batches(lengths: Sequence[int], batch_size: int, max_tokens: int = 16384) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first (so memory peaks early).

    A batch holds at most ``batch_size`` prompts and at most ``max_tokens`` padded tokens
    (``len(batch) * longest``): long few-shot prompts get smaller batches, which bounds the
    attention matrices (batch x heads x length^2) that dominate memory.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable").tolist()
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        width = lengths[cur[0]] if cur else lengths[i]
        if cur and (len(cur) >= batch_size or (len(cur) + 1) * width > max_tokens):
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


def plan_batches(prompts: Sequence[Sequence[int]], batch_size: int, max_tokens: int = 16384,
                 min_shared_prefix: int = 8) -> list[list[int]]:
    """Batches for :meth:`BatchGenerator.generate`, planned to minimise computed prompt tokens.

    Prompts are sorted by their tokens, so neighbours share long prefixes (system prompt,
    instruction, few-shot demonstrations), which the generator computes once per batch. A
    prompt joins the current batch only if that does not cost more prompt tokens than running
    it alone, counting ``shared + size * (longest - shared)`` for a batch (the padded,
    unshared part is computed per row). On a CPU, where prefill is compute-bound, padding is
    pure loss, so long unrelated prompts run alone; short or prefix-sharing ones are batched,
    which also batches their decode steps. Also at most ``batch_size`` prompts and
    ``max_tokens`` padded tokens per batch.
    """
    lens = [len(p) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: list(prompts[i]))

    def cost(size: int, shared: int, longest: int, shortest: int) -> int:
        shared = min(shared, shortest - 1)
        if size == 1 or shared < min_shared_prefix:
            return size * longest
        return shared + size * (longest - shared)

    batches: list[list[int]] = []
    cur: list[int] = []
    shared = longest = shortest = 0
    for i in order:
        if cur:
            j = common_prefix(prompts[cur[0]][:shared], prompts[i])
            n_long, n_short = max(longest, lens[i]), min(shortest, lens[i])
            ok = (len(cur) < batch_size and (len(cur) + 1) * n_long <= max_tokens
                  and cost(len(cur) + 1, j, n_long, n_short) <= cost(len(cur), shared, longest, shortest) + lens[i])
            if ok:
                cur.append(i)
                shared, longest, shortest = j, n_long, n_short
                continue
            batches.append(cur)
        cur, shared, longest, shortest = [i], lens[i], lens[i], lens[i]
    if cur:
        batches.append(cur)
    # Longest batches first: memory peaks early, and the progress bar speeds up, not down.
    batches.sort(key=lambda b: -max(lens[i] for i in b))
    return batches


def sorted_chunks(prompts: Sequence[Sequence[int]], batch_size: int, max_tokens: int = 16384) -> list[list[int]]:
    """Prompts in lexicographic token order, cut into consecutive batches (for ``prefill="rows"``).

    In this order a prefix cache computes every distinct prefix once, whatever the batches; the
    batches only group rows for decoding: at most ``batch_size`` rows and ``max_tokens`` cached
    tokens (``rows x longest``, which bounds the decode-time KV memory).
    """
    order = sorted(range(len(prompts)), key=lambda i: list(prompts[i]))
    batches: list[list[int]] = []
    cur: list[int] = []
    longest = 0
    for i in order:
        n = len(prompts[i])
        if cur and (len(cur) >= batch_size or (len(cur) + 1) * max(longest, n) > max_tokens):
            batches.append(cur)
            cur, longest = [], 0
        cur.append(i)
        longest = max(longest, n)
    if cur:
        batches.append(cur)
    return batches


def common_prefix_length(prompts: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix shared by all prompts."""
    return min((common_prefix(prompts[0], p) for p in prompts[1:]), default=len(prompts[0]))


def fit_context(ids: list[int], max_len: int | None, reserve: int) -> list[int]:
    """Keep the last ``max_len - reserve`` prompt tokens when a prompt exceeds the model's context
    (the query and answer cue are at the end; the oldest demonstrations go first)."""
    if max_len is None or len(ids) + reserve <= max_len:
        return ids
    return ids[-(max_len - reserve):]


def context_length(model) -> int | None:
    cfg = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        v = getattr(cfg, key, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def _device_of(model):
    return next(model.parameters()).device


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Prefilled:
    """Prompts run, ready to decode: a left-padded cache with room to grow, its mask ``(b, len)``,
    each row's last position ``(b,)`` and its first generated token ``(b,)``."""

    cache: Any
    mask: "torch.Tensor"
    last_pos: "torch.Tensor"
    next_token: "torch.Tensor"


class Prefill:
    """How an engine runs prompts: plans batches for it, prefills prompts for generation, scores options.

    Subclasses implement one way; :func:`make_prefill` picks one by name.
    """

    name = ""

    def __init__(self, engine: "Engine"):
        self.engine = engine

    def plan(self, prompts: Sequence[Sequence[int]], batch_size: int, max_tokens: int) -> list[list[int]]:
        """Batches of prompt indices for generation: lexicographic order, so the prefix cache
        computes every distinct prefix once whatever the batches."""
        return sorted_chunks(prompts, batch_size, max_tokens)

    def plan_scoring(self, prompts: Sequence[Sequence[int]], batch_size: int, max_tokens: int) -> list[list[int]]:
        """Batches of prompt indices for option scoring."""
        return self.plan(prompts, batch_size, max_tokens)

    def prompts(self, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> Prefilled:  # pragma: no cover
        raise NotImplementedError

    def options(self, prompts: Sequence[Sequence[int]], opt_ids: list[list[list[int]]]) -> list[np.ndarray]:
        """Per prompt, the summed log-probability of each option's tokens."""  # pragma: no cover
        raise NotImplementedError


class TreePrefill(Prefill):
    """A batch's prompts, past what the prefix cache holds, packed as a prefix tree into one call (or a few
    of about ``pack_tokens`` tokens) under a 4D mask: each distinct prefix computed once, no padding."""

    name = "tree"

    def prompts(self, prompts, max_new_tokens):
        import torch

        e = self.engine
        passes = e.prefix.tree_passes(prompts, 1, e.pack_tokens, e.call_overhead_tokens)
        cache, mask = stack_trees(passes, extra=max_new_tokens)
        logits = [None] * len(prompts)
        for tp, rows in passes:
            for j, r in enumerate(rows):
                logits[r] = tp.logits_of(j)[0]
        return Prefilled(cache, mask, mask.sum(-1) - 1, torch.stack(logits).argmax(-1))

    def options(self, prompts, opt_ids):
        """Every prompt, and every prompt + option where options span several tokens, as one prefix
        tree (packed calls): the prompt is computed once for all its options, each option once."""
        import torch

        e = self.engine
        rows: list[tuple[list[int], int, tuple[int, int | None]]] = []  # (sequence, logits kept, (item, option))
        for i, (p, opts) in enumerate(zip(prompts, opt_ids)):
            if all(len(c) == 1 for c in opts):
                rows.append((list(p), 1, (i, None)))  # the prompt's last logits score every option
            else:
                rows += [(list(p) + c, len(c) + 1, (i, j)) for j, c in enumerate(opts)]
        seqs, keep, owner = (list(x) for x in zip(*rows))
        vals: list[list[float]] = [[0.0] * len(opts) for opts in opt_ids]
        for tp, members in e.prefix.tree_passes(seqs, keep, e.pack_tokens, e.call_overhead_tokens):
            for r, s_idx in enumerate(members):
                i, j = owner[s_idx]
                logp = torch.log_softmax(tp.logits_of(r, keep[s_idx]).float(), -1)
                if j is None:
                    vals[i] = [float(logp[-1, c[0]]) for c in opt_ids[i]]
                else:
                    c = opt_ids[i][j]
                    vals[i][j] = float(logp[:-1].gather(-1, torch.tensor(c, device=logp.device)[:, None]).sum())
        return [np.array(v) for v in vals]


class RowsPrefill(Prefill):
    """Prompts in lexicographic order through the prefix cache, each distinct prefix computed once;
    neighbours whose own parts are short and alike share one padded pass
    (:func:`~codesign.evaluate.prefix_cache.plan_runs` weighs padding against the per-call overhead)."""

    name = "rows"

    def prompts(self, prompts, max_new_tokens):
        import torch

        e = self.engine
        parts = e.prefix.prefill_many(prompts, e.call_overhead_tokens, e.pad_id)
        cache, mask = stack_parts([(p.kv, p.mask) for p in parts], extra=max_new_tokens)
        nxt = torch.cat([p.logits for p in parts]).argmax(-1)
        return Prefilled(cache, mask, mask.sum(-1) - 1, nxt)

    def options(self, prompts, opt_ids):
        """Single-token-option prompts in planned runs; each (prompt, option) of the others alone, so the
        prompt is computed once for all its options and each option costs its own tokens."""
        import torch

        e = self.engine
        out: list[np.ndarray | None] = [None] * len(prompts)
        # Prompts whose options are single tokens need only their last logits: run them in the
        # cost-planned runs (padded passes for alike neighbours), in the given order.
        single = [i for i, opts in enumerate(opt_ids) if all(len(c) == 1 for c in opts)]
        if single:
            parts = e.prefix.prefill_many([list(prompts[i]) for i in single], e.call_overhead_tokens, e.pad_id)
            last = torch.log_softmax(torch.cat([p.logits for p in parts]).float(), -1)
            for r, i in enumerate(single):
                out[i] = np.array([float(last[r, c[0]]) for c in opt_ids[i]])
        for i, (p, opts) in enumerate(zip(prompts, opt_ids)):
            if out[i] is not None:
                continue
            vals = []
            for c in opts:
                logits = e.prefix.prefill(list(p) + c, logits_to_keep=len(c) + 1).logits[:-1].float()
                logp = torch.log_softmax(logits, -1).gather(-1, torch.tensor(c, device=logits.device)[:, None])
                vals.append(float(logp.sum()))
            out[i] = np.array(vals)
        return out  # type: ignore[return-value]


class BatchPrefill(Prefill):
    """A batch's common prefix once (batch 1, through the prefix cache when it can slice the model's
    cache), its KV repeated over the batch, then every row's own tokens in one left-padded pass:
    fastest where one pass of many rows costs about as much as one row (GPU). Option scoring runs
    whole prompts in left-padded batches."""

    name = "batch"

    def plan(self, prompts, batch_size, max_tokens):
        return plan_batches(prompts, batch_size, max_tokens, self.engine.min_shared_prefix)

    def plan_scoring(self, prompts, batch_size, max_tokens):
        return length_batches([len(p) for p in prompts], batch_size, max_tokens)

    def prompts(self, prompts, max_new_tokens):
        e = self.engine
        lens = [len(p) for p in prompts]
        shared = common_prefix_length(prompts) if len(prompts) > 1 else 0
        shared = min(shared, min(lens) - 1)  # each row keeps at least one own token
        if shared < e.min_shared_prefix or not e.prefix.supported:
            shared = 0
        cache, mask, logits = e.prefix.padded_pass(prompts, shared, max_new_tokens, e.pad_id)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        return Prefilled(cache, mask, pos[:, -1], logits.argmax(-1))

    def options(self, prompts, opt_ids):
        import torch

        e = self.engine
        out: list[np.ndarray | None] = [None] * len(prompts)
        single = [i for i, ids in enumerate(opt_ids) if all(len(c) == 1 for c in ids)]
        multi = [i for i, ids in enumerate(opt_ids) if i not in set(single)]
        if single:
            width = max(len(prompts[i]) for i in single)
            ids = torch.full((len(single), width), e.pad_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, i in enumerate(single):
                ids[r, width - len(prompts[i]):] = torch.tensor(list(prompts[i]))
                mask[r, width - len(prompts[i]):] = 1
            ids, mask = ids.to(e.device), mask.to(e.device)
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            with torch.inference_mode():
                last = e.model(input_ids=ids, attention_mask=mask, position_ids=pos,
                               logits_to_keep=1).logits[:, -1].float()
                logp = torch.log_softmax(last, -1).cpu().numpy()
            e.stats.prompt_tokens += int(mask.sum())
            e.stats.computed_prompt_tokens += int(mask.numel())
            for r, i in enumerate(single):
                out[i] = np.array([logp[r, c[0]] for c in opt_ids[i]])
        if multi:
            rows, owner = [], []
            for i in multi:
                for c in opt_ids[i]:
                    rows.append((list(prompts[i]), c))
                    owner.append(i)
            vals = logprob_rows(e, rows)
            for i in multi:
                out[i] = np.array([v for v, o in zip(vals, owner) if o == i])
        return out  # type: ignore[return-value]


def logprob_rows(engine: "Engine", rows: list[tuple[list[int], list[int]]]) -> np.ndarray:
    """Sum of log p(continuation | prompt) per (prompt, continuation) row, in one left-padded pass;
    shape (len(rows),)."""
    import torch

    e = engine
    width = max(len(p) + len(c) for p, c in rows)
    b = len(rows)
    ids = torch.full((b, width), e.pad_id, dtype=torch.long)
    mask = torch.zeros((b, width), dtype=torch.long)
    target = torch.zeros((b, width), dtype=torch.bool)
    for i, (p, c) in enumerate(rows):
        seq = p + c
        off = width - len(seq)  # left padding: the same layout as generation
        ids[i, off:] = torch.tensor(seq)
        mask[i, off:] = 1
        target[i, off + len(p):] = True
    ids, mask, target = ids.to(e.device), mask.to(e.device), target.to(e.device)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    # Left padding puts every continuation at the end: only the last k positions' logits are needed.
    k = max(len(c) for _, c in rows) + 1
    with torch.inference_mode():
        logits = e.model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=k).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, width - k + 1:, None])[..., 0]
        total = (logp * target[:, width - k + 1:]).sum(-1)
    e.stats.prompt_tokens += int(mask.sum())
    e.stats.computed_prompt_tokens += int(mask.numel())
    return total.cpu().numpy()


PREFILLS: dict[str, type[Prefill]] = {c.name: c for c in (TreePrefill, RowsPrefill, BatchPrefill)}


def make_prefill(mode: str, engine: "Engine") -> Prefill:
    """The strategy for ``mode`` (``auto`` resolved for the engine's device); the prefix-cache
    strategies fall back to :class:`BatchPrefill`, once, where the model's cache cannot be sliced."""
    mode = resolve_prefill(mode, engine.device)
    if mode in ("tree", "rows") and not engine.prefix.supported:
        mode = "batch"
    return PREFILLS[mode](engine)


class Engine:
    """What generation and option scoring share: the model and tokenizer, the pad id, the prefix KV
    cache, the run statistics and the prefill strategy, chosen once.

    Args:
        prefill: ``"tree"`` (:class:`TreePrefill`, fastest on CPU), ``"rows"`` (:class:`RowsPrefill`),
            ``"batch"`` (:class:`BatchPrefill`, fastest on GPU) or ``"auto"``: tree on CPU, batch otherwise.
        call_overhead_tokens: the fixed cost of one model call in prompt tokens' worth of compute
            (SmolLM2-135M on 2 CPU cores: ~40 ms per call vs ~1.3 ms per token, about 32).
        pack_tokens: about how many tokens one tree pass computes at most (the tree mask's
            attention is dense within a pass).
        min_shared_prefix: shortest common prefix worth computing once in batch mode.
    """

    def __init__(self, model, tokenizer, *, prefill: str = "auto", call_overhead_tokens: int = 32,
                 pack_tokens: int = 512, min_shared_prefix: int = 8):
        if tokenizer is None:
            raise ValueError("evaluation needs a tokenizer (random:<shape> models have none)")
        self.model, self.tokenizer = model, tokenizer
        self.device = _device_of(model)
        self.eos = eos_ids(tokenizer, model)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(self.eos), 0)
        self.pad_id = int(pad)
        self.pack_tokens, self.call_overhead_tokens = pack_tokens, call_overhead_tokens
        self.min_shared_prefix = min_shared_prefix
        self.prefix = PrefixCache(model)
        self.stats = RunStats()
        self.prefill = make_prefill(prefill, self)

    @property
    def prefill_mode(self) -> str:
        """The name of the strategy in use."""
        return self.prefill.name

    def prefill_groups(self, prompts: Sequence[Sequence[int]]) -> list[list[int]]:
        """How rows prefill splits a batch into padded runs and lone prompts
        (:func:`~codesign.evaluate.prefix_cache.plan_runs`)."""
        return plan_runs(prompts, self.prefix.ids, self.call_overhead_tokens)

    def _timed(self, t0: float, prompt_tokens: int, computed0: int) -> None:
        _sync(self.device)
        self.stats.prefill_s += time.perf_counter() - t0
        self.stats.prompt_tokens += prompt_tokens
        self.stats.computed_prompt_tokens += self.prefix.computed_tokens - computed0


@dataclass
class _Decoding:
    """Decode-loop state: cache rows hold the still-running sequences (``active``: their original rows)."""

    state: Prefilled
    active: list[int]
    tokens: list[list[int]]
    texts: list[str]
    done_at: list[float]


class BatchGenerator(Engine):
    """Greedy decoding of many chat prompts in batches, with per-sequence early stop
    (``stop_strings`` end an answer as EOS does). Arguments as :class:`Engine`."""

    def __init__(self, model, tokenizer, *, stop_strings: Sequence[str] = DEFAULT_STOP, **engine: Any):
        super().__init__(model, tokenizer, **engine)
        self.stop_strings = tuple(stop_strings)

    def plan(self, prompts: Sequence[Sequence[int]], batch_size: int, max_tokens: int = 16384) -> list[list[int]]:
        """Batches of prompt indices in the order that suits the prefill strategy."""
        return self.prefill.plan(prompts, batch_size, max_tokens)

    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> list[GenOutput]:
        """Greedy answers to one batch of prompts (token id lists), in the given order."""
        import torch

        b = len(prompts)
        computed0, t0 = self.prefix.computed_tokens, time.perf_counter()
        with torch.inference_mode():
            state = self.prefill.prompts(prompts, max_new_tokens)
            self._timed(t0, sum(len(p) for p in prompts), computed0)
            run = _Decoding(state, list(range(b)), [[] for _ in range(b)], [""] * b, [0.0] * b)
            for step in range(max_new_tokens):
                if not self._advance(run, step, max_new_tokens, t0):
                    break
                self._step(run)
        results = [GenOutput(self._answer(run.texts[i]), len(prompts[i]), len(run.tokens[i]), run.done_at[i])
                   for i in range(b)]
        self.stats.gen_tokens += sum(len(t) for t in run.tokens)
        self.stats.n_items += b
        return results

    def _advance(self, run: _Decoding, step: int, max_new_tokens: int, t0: float) -> bool:
        """Take each running row's next token; rows that finished (EOS, a stop string, the budget) leave
        the batch, their cache rows dropped. False when none is left."""
        import torch

        toks = run.state.next_token.tolist()
        keep = []
        for row, orig in enumerate(run.active):
            tok = toks[row]
            finished = tok in self.eos
            if not finished:
                run.tokens[orig].append(tok)
                run.texts[orig] = self.tokenizer.decode(run.tokens[orig], skip_special_tokens=True)
                finished = any(s in run.texts[orig].lstrip() for s in self.stop_strings)
            if finished or step == max_new_tokens - 1:
                run.done_at[orig] = time.perf_counter() - t0
            else:
                keep.append(row)
        if keep and len(keep) < len(run.active):
            idx = torch.tensor(keep, device=self.device)
            st = run.state
            st.cache.batch_select_indices(idx)
            run.state = Prefilled(st.cache, st.mask[idx], st.last_pos[idx], st.next_token[idx])
            run.active = [run.active[r] for r in keep]
        return bool(keep)

    def _step(self, run: _Decoding) -> None:
        """One decode step of every running row (timed as decode)."""
        import torch

        ts = time.perf_counter()
        st = run.state
        mask = torch.cat([st.mask, st.mask.new_ones((len(run.active), 1))], dim=1)
        last_pos = st.last_pos + 1
        out = self.model(input_ids=st.next_token[:, None], attention_mask=mask, position_ids=last_pos[:, None],
                         **cache_kwargs(self.model, st.cache), use_cache=True)
        run.state = Prefilled(cache_out(out), mask, last_pos, out.logits[:, -1, :].argmax(-1))
        _sync(self.device)
        self.stats.decode_s += time.perf_counter() - ts
        self.stats.decode_steps += 1

    def _answer(self, text: str) -> str:
        """The generated text up to the first stop string."""
        for s in self.stop_strings:
            j = text.lstrip().find(s)
            if j >= 0:
                text = text.lstrip()[:j]
        return text


class OptionScorer(Engine):
    """Log-likelihood mode: rank each item's options by the summed log-probability of their tokens
    as a continuation of the chat prompt (no generation, so no parsing and no INVALID).

    When every option of a prompt is a single token, one forward pass of the prompt scores them
    all (its last-position distribution); otherwise each (prompt, option) pair is one row. The
    prefill strategy decides how prompts run (arguments as :class:`Engine`): through the prefix KV
    cache (tree, rows: a prompt's shared prefix computed once and, for multi-token options, the
    prompt once for all its options) or in left-padded batches.
    """

    def plan(self, prompts: Sequence[Sequence[int]], batch_size: int, max_tokens: int = 16384) -> list[list[int]]:
        """Batches of prompt indices: lexicographic order for the prefix cache, else by length."""
        return self.prefill.plan_scoring(prompts, batch_size, max_tokens)

    def option_ids(self, option: str) -> list[int]:
        return [int(i) for i in self.tokenizer.encode(option, add_special_tokens=False)]

    def _logprob_rows(self, rows: list[tuple[list[int], list[int]]]) -> np.ndarray:
        return logprob_rows(self, rows)

    def score(self, prompts: Sequence[Sequence[int]], options: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Per prompt, the log-likelihood of each of its options: list of arrays (n_options,)."""
        computed0, t0 = self.prefix.computed_tokens, time.perf_counter()
        opt_ids = [[self.option_ids(o) for o in opts] for opts in options]
        res = self.prefill.options(prompts, opt_ids)
        # the batch strategy counts its own padded rows; the prefix-cache ones count the prompts
        counted = 0 if isinstance(self.prefill, BatchPrefill) else sum(len(p) for p in prompts)
        self._timed(t0, counted, computed0)
        self.stats.n_items += len(prompts)
        return res
