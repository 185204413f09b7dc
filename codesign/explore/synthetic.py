"""A realistic synthetic catalogue: real benchmark items, simulated member answers, real store.

For tests and the exploration benchmark, where running quantize + evaluate for every member would
cost minutes per member. Items are the real task items (``Task.load``: real labels, subtasks and
metadata, so the tasks' own ``score`` functions run unchanged); answers follow a latent-ability
model with the structure that makes precision ensembles interesting:

- every item has a difficulty shared by all members (errors are correlated across precisions);
- a member's ability drops with fewer bits, less for GPTQ/AWQ than for RTN;
- low-bit members lean towards the same wrong "attractor" label, refuse more, and give more
  unparseable answers;
- OOD knowledge items accept "I don't know" (REFUSED) as an answer.

Everything is seeded; the same arguments write the same answers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from codesign.records import INVALID, REFUSED, VariantSpec

_METHOD_GAIN = {"rtn": 0.0, "gptq": 0.35, "awq": 0.3, "dense": 0.0}
_TASK_BASE = {"mmlu": 0.2, "advglue": 0.3, "fairness": 0.9, "ethics": 0.7, "ood": 0.6}


def synthetic_catalogue(model: str = "smollm2-135m-instruct", methods: Sequence[str] = ("rtn", "gptq", "awq"),
                        bits: Sequence[int] = (3, 4, 8), group_size: int = 128,
                        include_dense: bool = False) -> list[VariantSpec]:
    """Variant specs of a method x bits catalogue, exactly as :class:`codesign.quantize.Catalogue` makes
    them (same variant ids), with the dense model when asked. No checkpoints are made."""
    from codesign.quantize import Catalogue

    return Catalogue(model=model, methods=list(methods), bits=list(bits), group_sizes=[group_size],
                     include_dense=include_dense).variants()


def ability(spec: VariantSpec) -> float:
    """Latent ability of a variant (logit scale): 0 for the dense model, lower with fewer bits."""
    if spec.is_dense or spec.bits >= 16:
        return 0.0
    loss = {8: 0.05, 6: 0.15, 5: 0.3, 4: 0.55, 3: 1.4, 2: 3.0}.get(spec.bits, 0.5)
    return -loss * (1.0 - _METHOD_GAIN.get(spec.method, 0.0) * (1.0 if spec.bits <= 4 else 0.5))


def fill_synthetic_store(store, members: Sequence[VariantSpec], tasks: Sequence[str], *, data_dir=None,
                         limit: int | None = 64, seed: int = 0, mode: str = "loglik",
                         protocol: str | None = None) -> dict[str, list[str]]:
    """Store real items (of ``protocol``'s tasks) and simulated answers of ``members`` on ``tasks``.

    Returns:
        Task -> item ids written (the study's item set).
    """
    from codesign.evaluate.tasks import get_task
    from codesign.store import ItemRow, OutputRow

    rng = np.random.default_rng(seed)
    written: dict[str, list[str]] = {}
    for t in tasks:
        task = get_task(t, protocol=protocol)
        items = task.load(data_dir, limit=limit, seed=seed)
        store.add_items([ItemRow(t, it.item_id, it.subtask, it.label, it.meta, task.protocol) for it in items])
        n = len(items)
        n_opt = np.array([len(it.options) for it in items])
        gold = np.array([it.label for it in items])
        keeps = np.array([task.keeps_refusal(it.subtask) for it in items])
        difficulty = rng.normal(0.0, 1.2, n)
        attractor = (gold + 1 + rng.integers(0, np.maximum(n_opt - 1, 1))) % n_opt  # a shared wrong label
        member_noise = rng.normal(0.0, 1.0, (len(members), n))
        for i, spec in enumerate(members):
            a = ability(spec)
            # lower precision: noisier, more refusals and invalid answers
            noise_scale = 0.5 + 0.6 * max(0.0, -a)
            logit = _TASK_BASE.get(t, 0.0) + a - difficulty + noise_scale * member_noise[i]
            correct = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
            wrong = np.where(rng.random(n) < 0.5 + 0.3 * min(1.0, -a), attractor,
                             (gold + 1 + rng.integers(0, np.maximum(n_opt - 1, 1), n)) % n_opt)
            pred = np.where(correct, gold, wrong)
            u = rng.random(n)
            p_ref = 0.03 + 0.08 * min(1.0, -a) + np.where(keeps, 0.15, 0.0)
            pred = np.where(u < p_ref, REFUSED, pred)
            pred = np.where((u >= p_ref) & (u < p_ref + 0.01 + 0.05 * min(1.0, -a)), INVALID, pred)
            store.add_variant(spec)
            store.add_outputs(OutputRow(spec.variant_id, t, it.item_id, int(p), raw_text=None, mode=mode,
                                        protocol=task.protocol)
                              for it, p in zip(items, pred))
        written[t] = [it.item_id for it in items]
    return written
