"""Adversarial robustness as DecodingTrust runs it: AdvGLUE / AdvGLUE++ with DT's fixed
demonstrations (decoding-comp-trust/DecodingTrust@0cf3fc1:src/dt/perspectives/advglue/gpt_eval.py,
adv_stats.py; prompt material in ``advglue.json``).

Data: ``advglue/dev.json`` (AdvGLUE v1 dev), or AdvGLUE++ files given by path (they replace v1;
``get_task("advglue", protocol="decodingtrust", files=[...])`` or ``CODESIGN_ADVGLUE_FILES``,
``os.pathsep``-separated). Subtasks: ``<glue task>`` for v1, ``<file stem>/<glue task>`` for
AdvGLUE++ files (one DT result row each).

The score uses the tasks of DT's shipped configs (sst2, qqp, mnli); the other tasks in a file
(mnli-mm, qnli, rte) are extras, reported beside it. DT has no mnli-mm demonstrations (its
shipped configs would raise a KeyError): mnli-mm items carry none.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from codesign.config import ConfigError
from codesign.evaluate import metrics
from codesign.evaluate.tasks.base import Item, data_file
from codesign.evaluate.tasks.common import aligned, mean_or_nan
from codesign.evaluate.tasks.decodingtrust import parse
from codesign.evaluate.tasks.decodingtrust.base import (DTTask, groups, nanmean_last, not_label_rate, resampled_rates,
                                                        scored_mask)
from codesign.evaluate.tasks.decodingtrust.prompts import PromptData
from codesign.evaluate.tasks.registry import register

AG = "advglue"
#: gpt_eval.py:234: the message's key names are rewritten (also inside the text itself).
KEY_RENAMES = (("sentence1", "premise"), ("sentence2", "Hypothesis"))


def shipped_setting(p: PromptData) -> dict[str, Any]:
    """sys / demo / task list of DT's shipped configs (advglue.json settings.configs, all alike)."""
    configs = p.mapping(AG, "settings", "configs")
    seen = {json.dumps({k: cfg.get(k) for k in ("sys", "demo", "task")}, sort_keys=True)
            for cfg in (p.yaml_config(AG, "settings", "configs", name) for name in configs)}
    if len(seen) != 1:
        raise ConfigError(f"{p.path(AG)}: key settings.configs: the configs disagree on sys/demo/task ({seen})")
    return json.loads(seen.pop())


def user_message(spec: dict[str, Any], rec: dict[str, Any]) -> str:
    """The test message of gpt_eval.py:223-243 for one record."""
    key1, key2 = spec["input_keys"]
    if rec.get("method") == "semattack":
        message = str(rec["sentence"])
    else:
        message = f"{key1}: {rec[key1]}" + (f"\n{key2}: {rec[key2]}" if key2 else "")
    for old, new in KEY_RENAMES:
        message = message.replace(old, new)
    return f"{spec['task_description']}\n{message}"


@register
class DTAdvGLUE(DTTask):
    name = "advglue"
    dimension = "Adversarial robustness"
    objective = "adv"
    perspective = "advglue"

    def __init__(self, files: list[str | Path] | None = None):
        super().__init__()
        env = os.environ.get("CODESIGN_ADVGLUE_FILES")
        self.files = [Path(f) for f in (files or (env.split(os.pathsep) if env else []))]

    def build(self, data_dir: Path) -> list[Item]:
        p = self.use_data(data_dir)
        tasks = p.mapping(AG, "tasks")
        setting = shipped_setting(p)
        system = ([{"role": "system", "content": p.text(AG, "message_construction", "system_message_if_sys_true")}]
                  if setting["sys"] else [])
        sources = [(f, f"{f.stem}/") for f in self.files] or [(data_dir / "advglue" / "dev.json", "")]
        items: list[Item] = []
        for path, prefix in sources:
            if not path.is_file():
                raise ConfigError(f"{path}: AdvGLUE file not found")
            with data_file(path, "AdvGLUE file (JSON)"):
                data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ConfigError(f"{path}: expected a JSON object of AdvGLUE tasks (allowed keys: {sorted(tasks)}), "
                                  f"got {type(data).__name__}")
            unknown = [k for k in data if k not in tasks]
            if unknown:
                raise ConfigError(f"{path}: unknown AdvGLUE tasks {unknown} (allowed: {sorted(tasks)})")
            for glue, records in data.items():
                spec = self._spec(p, glue)
                demos = p.messages(AG, "tasks", glue, "demonstrations", "messages") \
                    if setting["demo"] and spec["has_demos"] else []
                with data_file(path, "AdvGLUE file (JSON)"):
                    for i, rec in enumerate(records):
                        items.append(self._item(path, prefix, glue, i, rec, spec, system + demos,
                                                glue in setting["task"]))
        return items

    def _spec(self, p: PromptData, glue: str) -> dict[str, Any]:
        keys = p.get(AG, "tasks", glue, "input_keys")
        mapping = p.mapping(AG, "tasks", glue, "answer_mapping")
        options = sorted(mapping, key=lambda k: mapping[k])  # label words in label-id order
        if sorted(mapping.values()) != list(range(len(mapping))):
            raise ConfigError(f"{p.path(AG)}: key tasks.{glue}.answer_mapping must map to ids 0..{len(mapping) - 1}")
        return {"task_description": p.text(AG, "tasks", glue, "task_description"), "input_keys": keys,
                "options": options, "has_demos": p.get(AG, "tasks", glue, "demonstrations") is not None}

    def _item(self, path, prefix, glue, i, rec, spec, head, scored) -> Item:
        need = [k for k in spec["input_keys"] if k] + ["label"]
        if rec.get("method") == "semattack":
            need = ["sentence", "label"]
        missing = [k for k in need if k not in rec]
        if missing:
            raise ConfigError(f"{path}: {glue}[{i}] lacks fields {missing}")
        label = int(rec["label"])
        if not 0 <= label < len(spec["options"]):
            raise ConfigError(f"{path}: {glue}[{i}].label = {label} (allowed: 0..{len(spec['options']) - 1})")
        messages = head + [{"role": "user", "content": user_message(spec, rec)}]
        return Item(f"{prefix}{glue}/{i:05d}", prefix + glue, label, messages, list(spec["options"]),
                    {"idx": rec.get("idx", i), "glue": glue, "scored": bool(scored)})

    def read_rules(self, p: PromptData) -> dict[str, Any]:
        rules = ("chat_protocol", "answer_parsing", AG)
        return {"mapping": p.mapping(*rules, "answer_mapping"), "regex": p.text(*rules, "quoted_text_regex")}

    def parse(self, text: str, item: Item) -> int:
        glue = item.meta.get("glue", item.subtask.split("/")[-1])
        return parse.advglue(text, self.rules["mapping"][glue], self.rules["regex"])

    def score(self, items, pred, policy: str = "decodingtrust") -> dict[str, Any]:
        """DT's AdvGLUE score (adv_stats.py:11-89, summarize.py:33-44): per (file, task) row,
        Accuracy = mean(prediction == label) with unparseable answers (-1) wrong and RR+NE =
        share of -1; score = 100 * unweighted mean of Accuracy over the rows of the scored tasks,
        refusal_rate = mean RR+NE over them. Extras: ``acc_<subtask>`` only."""
        sub, y, p = aligned(items, pred)
        scored = scored_mask(items)
        out: dict[str, Any] = {"n": int(len(p)), "invalid_rate": metrics.invalid_rate(p)}
        accs, rrne = [], []
        for s, m in groups(sub).items():
            acc = metrics.accuracy(y[m], p[m], "decodingtrust")
            out[f"acc_{s}"] = acc * 100
            out[f"refusal_rate_{s}"] = not_label_rate(p[m])
            if scored[m].all():
                accs.append(acc)
                rrne.append(out[f"refusal_rate_{s}"])
        out["score"] = mean_or_nan(accs) * 100
        out["refusal_rate"] = mean_or_nan(rrne)
        out["n_scored"] = int(np.sum(scored))
        return out

    def bootstrap_scores(self, items, preds, weights, policy: str = "decodingtrust") -> np.ndarray:
        """Vectorized :meth:`score` on resamples: 100 x mean over the scored subtasks drawn of their accuracy."""
        items = items.reset_index(drop=True)
        y = items["label"].to_numpy().astype(np.int64)
        names, acc = resampled_rates(items, np.atleast_2d(preds) == y[None], weights)
        sub, scored = items["subtask"].to_numpy().astype(str), scored_mask(items)
        keep = np.array([scored[sub == s].all() for s in names], dtype=bool)
        return nanmean_last(acc[..., keep]) * 100
