"""Calibration data: text from a file or data set, tokenized into ``N × L`` token windows, seeded.

Sources (``VariantSpec.calib``):

- ``"default"``: text that codesign never evaluates on, from the benchmark data directory —
  the unlabeled ETHICS ``cm_ambig.csv`` scenarios and the MMLU ``dev`` split (few-shot
  demonstrations only) — so calibration cannot leak test items into a quantized variant;
- a ``.txt``/``.md`` file (documents separated by blank lines);
- a ``.csv``, ``.json`` or ``.jsonl`` data-set file (every string field of every row/record);
- a folder holding such files.

Documents are shuffled with the seed, joined with the tokenizer's EOS token into one token
stream, and ``n_samples`` windows of ``seq_len`` tokens are drawn at seeded random offsets.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import torch

from codesign.config import ConfigError

DEFAULT_SOURCE = "default"
TEXT_SUFFIXES = (".txt", ".md")
DATA_SUFFIXES = (".csv", ".json", ".jsonl")


def _strings(obj) -> list[str]:
    if isinstance(obj, str):
        return [obj] if len(obj.split()) > 3 else []  # skip labels, ids, single words
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _strings(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in _strings(v)]
    return []


def _file_texts(path: Path) -> list[str]:
    suf = path.suffix.lower()
    if suf in TEXT_SUFFIXES:
        return [d.strip() for d in path.read_text(errors="replace").split("\n\n") if d.strip()]
    if suf == ".csv":
        with path.open(newline="", errors="replace") as f:
            return [" ".join(c for c in row if len(c.split()) > 3) for row in csv.reader(f)
                    if any(len(c.split()) > 3 for c in row)]
    if suf == ".jsonl":
        return [s for line in path.read_text().splitlines() if line.strip() for s in _strings(json.loads(line))]
    if suf == ".json":
        return _strings(json.loads(path.read_text()))
    raise ConfigError(f"calibration file {path}: unsupported type {suf!r} "
                      f"(allowed: {list(TEXT_SUFFIXES + DATA_SUFFIXES)} or a folder of them)")


def _mmlu_dev_texts(path: Path) -> list[str]:
    out = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            choices = " ".join(f"({'ABCD'[i]}) {row[f'choice{i}']}" for i in range(4))
            out.append(f"{row['question']} {choices} Answer: {'ABCD'[int(row['answer'])]}")
    return out


def calibration_texts(source: str = DEFAULT_SOURCE, data_dir: str | Path | None = None) -> list[str]:
    """The documents of a calibration source (see module docstring)."""
    if source in (DEFAULT_SOURCE, "none", ""):
        from codesign.paths import data_dir as resolve

        root = resolve(data_dir)
        texts = _file_texts(root / "ethics" / "commonsense" / "cm_ambig.csv")
        for p in sorted((root / "mmlu" / "dev").glob("*_dev.csv")):
            texts += _mmlu_dev_texts(p)
        return texts
    path = Path(source)
    if not path.exists():
        raise ConfigError(f"calibration source {source!r}: no such file or folder "
                          f"(allowed: 'default', a text file, a .csv/.json/.jsonl data set, or a folder)")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in TEXT_SUFFIXES + DATA_SUFFIXES) \
        if path.is_dir() else [path]
    texts = [t for f in files for t in _file_texts(f)]
    if not texts:
        raise ConfigError(f"calibration source {source!r}: no text found")
    return texts


def calibration_tokens(tokenizer, source: str = DEFAULT_SOURCE, n_samples: int = 32, seq_len: int = 256,
                       seed: int = 0, data_dir: str | Path | None = None) -> torch.Tensor:
    """``(n_samples, seq_len)`` int64 token windows drawn from ``source`` with ``seed``."""
    if n_samples < 1 or seq_len < 2:
        raise ConfigError(f"calibration needs n_samples >= 1 and seq_len >= 2 (got {n_samples}, {seq_len})")
    if tokenizer is None:
        raise ConfigError("this model has no tokenizer, so it cannot be calibrated on text; use method 'rtn'")
    texts = calibration_texts(source, data_dir)
    rng = random.Random(seed)
    rng.shuffle(texts)
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    need = n_samples * seq_len * 2  # enough stream for non-overlapping-ish windows; stop tokenizing there
    stream: list[int] = []
    for t in texts:
        stream += tokenizer(t, add_special_tokens=False)["input_ids"] + [eos]
        if len(stream) >= need:
            break
    if len(stream) < seq_len:
        raise ConfigError(f"calibration source {source!r} has only {len(stream)} tokens, fewer than "
                          f"seq_len = {seq_len}")
    ids = torch.tensor(stream, dtype=torch.int64)
    starts = [rng.randrange(0, len(stream) - seq_len + 1) for _ in range(n_samples)]
    return torch.stack([ids[s:s + seq_len] for s in starts])
