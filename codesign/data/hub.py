"""Benchmarks from their public homes, written in the on-disk layout the task loaders read.

The task loaders read one data directory (``mmlu/``, ``ethics/``, ``advglue/``, ``adult/``,
``decodingtrust/``; see the README's *Data* section). :func:`materialise` fills such a directory
in a cache folder from the sources below, so ``--data-dir hub`` (or ``CODESIGN_DATA=hub``) runs
every loader unchanged on downloaded data:

- ``mmlu``: Hugging Face ``cais/mmlu`` (config ``all``; ``test`` and ``dev`` splits) -> one CSV per
  subject, header ``question,choice0..3,answer``.
- ``advglue``: Hugging Face ``AI-Secure/adv_glue`` (configs ``adv_sst2`` ... ``adv_rte``,
  ``validation``) -> ``advglue/dev.json`` keyed by task.
- ``ethics``, ``decodingtrust``: DecodingTrust's repository at the pinned commit (the ETHICS copy DT
  evaluates, with ``cm_ambig.csv``, which the default calibration set reads; DT's fairness prompts
  with their ``.npy`` labels; OOD style / knowledge), each file checked against a pinned SHA-256.
  The Hub's ETHICS repositories carry other splits and no ``cm_ambig.csv``, and the Hub's
  ``AI-Secure/DecodingTrust`` has since reformatted these files and dropped the ``.npy`` arrays.
- ``dt-prompts``: the prompt files built from DT's code (:mod:`codesign.data.dt_prompts`).
- ``adult``: the UCI Adult files (checked against pinned SHA-256).

Each source is written to a temporary folder and moved into place with a marker file, so an
interrupted download is redone, never half-read. Offline, every source fails at once with an
error saying how to point at local data instead.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from codesign.config import ConfigError
from codesign.data.repo import DT_COMMIT, DT_REPO, RepoFiles, fetch_url

HUB_DATA = "hub"  # the --data-dir / CODESIGN_DATA value that selects this layer
MARKERS = ".codesign-data"
PINNED = Path(__file__).with_name("pinned_files.json")
MMLU_HEADER = ["question", "choice0", "choice1", "choice2", "choice3", "answer"]
ETHICS_HEADER = ["label", "input", "is_short", "edited"]
#: advglue/dev.json task -> (Hub config of AI-Secure/adv_glue, text fields in order)
ADVGLUE_TASKS = {"sst2": ("adv_sst2", ("sentence",)), "qqp": ("adv_qqp", ("question1", "question2")),
                 "mnli": ("adv_mnli", ("premise", "hypothesis")),
                 "mnli-mm": ("adv_mnli_mismatched", ("premise", "hypothesis")),
                 "qnli": ("adv_qnli", ("question", "sentence")), "rte": ("adv_rte", ("sentence1", "sentence2"))}
OFFLINE_HINT = ("point --data-dir or CODESIGN_DATA at a local copy of the benchmark data instead (folders mmlu/, "
                "ethics/, advglue/, adult/, decodingtrust/; see the README's Data section)")


def hub_root() -> Path:
    from codesign.paths import cache_dir

    return cache_dir() / "data"


# -- converters: Hub rows -> the loaders' files ----------------------------------------------------
def _csv_text(header: list[str], rows: Iterable[list]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def write_mmlu(rows: Iterable[dict], split: str, root: Path) -> list[Path]:
    """``cais/mmlu`` rows (``question``, ``subject``, ``choices`` [4], ``answer`` 0-3) of one split
    -> ``mmlu/<split>/<subject>_<split>.csv``, rows in Hub order within each subject."""
    by_subject: dict[str, list[list]] = {}
    for r in rows:
        choices = list(r["choices"])
        if len(choices) != 4 or int(r["answer"]) not in range(4):
            raise ConfigError(f"cais/mmlu {split}: row {r.get('question', '')[:40]!r} has {len(choices)} choices and "
                              f"answer {r['answer']!r} (allowed: 4 choices, answer 0-3)")
        by_subject.setdefault(r["subject"], []).append([r["question"], *choices, int(r["answer"])])
    folder = root / "mmlu" / split
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for subject, body in sorted(by_subject.items()):
        p = folder / f"{subject}_{split}.csv"
        p.write_text(_csv_text(MMLU_HEADER, body))
        out.append(p)
    return out


def write_advglue(rows_by_task: dict[str, Iterable[dict]], root: Path) -> Path:
    """``AI-Secure/adv_glue`` validation rows per task -> ``advglue/dev.json``
    (``{task: [{idx, <text fields>, label}, ...]}``)."""
    data = {}
    for task, rows in rows_by_task.items():
        fields = ADVGLUE_TASKS[task][1]
        data[task] = [{"idx": int(r["idx"]), **{k: r[k] for k in fields}, "label": int(r["label"])} for r in rows]
    p = root / "advglue" / "dev.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(data))
    return p


def hf_rows(repo: str, config: str, split: str) -> Iterable[dict]:
    """Rows of a Hugging Face data set, streamed (only that split's files are downloaded)."""
    try:
        import datasets
    except ImportError:
        raise ConfigError(f"the Hub source {repo} needs the `datasets` package: pip install 'codesign[hub]'; or "
                          + OFFLINE_HINT) from None
    datasets.logging.set_verbosity_error()
    return datasets.load_dataset(repo, config, split=split, streaming=True)


# -- pinned files: DT's repository, UCI ------------------------------------------------------------
def pinned(name: str) -> list[dict]:
    return json.loads(PINNED.read_text())[name]


def copy_pinned(name: str, root: Path, read: Callable[[dict], bytes]) -> list[Path]:
    """Write the pinned files of ``name``, each checked against its SHA-256."""
    out = []
    for f in pinned(name):
        data = read(f)
        digest = hashlib.sha256(data).hexdigest()
        if digest != f["sha256"]:
            raise ConfigError(f"{f.get('repo_path') or f['url']}: SHA-256 {digest[:12]}... differs from the pinned "
                              f"{f['sha256'][:12]}... (allowed: the file as pinned; the source changed)")
        p = root / f["path"]
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        out.append(p)
    return out


# -- the registry ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    name: str
    origin: str  # where it comes from, for people
    probe: str  # a URL that answers when the origin is reachable
    fetch: Callable[[Path, RepoFiles | None], list[Path]]
    check: str  # a path (relative to the data root) that exists once the source is there


def _fetch_mmlu(root: Path, _files) -> list[Path]:
    return [p for split in ("test", "dev") for p in write_mmlu(hf_rows("cais/mmlu", "all", split), split, root)]


def _fetch_advglue(root: Path, _files) -> list[Path]:
    return [write_advglue({t: hf_rows("AI-Secure/adv_glue", cfg, "validation") for t, (cfg, _) in
                           ADVGLUE_TASKS.items()}, root)]


def _fetch_dt(name: str) -> Callable[[Path, RepoFiles | None], list[Path]]:
    def fetch(root: Path, files: RepoFiles | None) -> list[Path]:
        files = files or RepoFiles()
        return copy_pinned(name, root, lambda f: files.read_bytes(f["repo_path"]))
    return fetch


def _fetch_prompts(root: Path, files: RepoFiles | None) -> list[Path]:
    from codesign.data.dt_prompts import build_prompt_files, write_prompt_files

    return write_prompt_files(build_prompt_files(files or RepoFiles()), root / "decodingtrust" / "prompts")


def _fetch_adult(root: Path, _files) -> list[Path]:
    return copy_pinned("adult", root, lambda f: fetch_url(f["url"], hint=OFFLINE_HINT))


_GH = f"https://raw.githubusercontent.com/{DT_REPO}/{DT_COMMIT}/README.md"
SOURCES: dict[str, Source] = {s.name: s for s in (
    Source("mmlu", "Hugging Face cais/mmlu (all: test, dev)", "https://huggingface.co/api/datasets/cais/mmlu",
           _fetch_mmlu, "mmlu/test/abstract_algebra_test.csv"),
    Source("advglue", "Hugging Face AI-Secure/adv_glue (adv_*: validation)",
           "https://huggingface.co/api/datasets/AI-Secure/adv_glue", _fetch_advglue, "advglue/dev.json"),
    Source("ethics", f"{DT_REPO}@{DT_COMMIT[:7]} data/machine_ethics (ETHICS commonsense, as DT evaluates it)",
           _GH, _fetch_dt("ethics"), "ethics/commonsense/cm_test.csv"),
    Source("decodingtrust", f"{DT_REPO}@{DT_COMMIT[:7]} data/ (fairness prompts + labels, OOD style/knowledge)",
           _GH, _fetch_dt("decodingtrust"), "decodingtrust/ood/style.json"),
    Source("dt-prompts", f"{DT_REPO}@{DT_COMMIT[:7]} source code (codesign data dt-prompts)", _GH, _fetch_prompts,
           "decodingtrust/prompts/advglue.json"),
    Source("adult", "UCI Adult (archive.ics.uci.edu)",
           "https://archive.ics.uci.edu/ml/machine-learning-databases/adult/adult.names", _fetch_adult,
           "adult/adult.test"),
)}


def check_names(names: Iterable[str] | None) -> list[str]:
    names = list(names or SOURCES)
    bad = [n for n in names if n not in SOURCES]
    if bad:
        raise ConfigError(f"unknown data source(s) {bad} (allowed: {list(SOURCES)})")
    return names


def is_complete(root: Path, name: str) -> bool:
    return (Path(root) / MARKERS / f"{name}.json").is_file()


def probe(source: Source, local: bool) -> None:
    """Fail fast, before any download, when the source's host cannot be reached."""
    if local:
        return
    if source.probe.startswith("https://huggingface.co") and os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        raise ConfigError(f"data source {source.name} ({source.origin}) needs the Hugging Face Hub, and "
                          f"HF_HUB_OFFLINE is set; {OFFLINE_HINT}")
    try:
        fetch_url(source.probe, hint=OFFLINE_HINT)
    except ConfigError as exc:
        raise ConfigError(f"data source {source.name} ({source.origin}) is unreachable: {exc}") from None


def materialise(names: Iterable[str] | None = None, root: Path | None = None, force: bool = False,
                dt_source: str | Path | None = None, progress: bool = True) -> Path:
    """Download and convert the named sources (default all) into ``root`` (default the hub cache,
    ``$CODESIGN_CACHE/data``); sources already there are kept unless ``force``. Returns ``root``.

    ``dt_source``: a local clone (or layout copy) of DecodingTrust for the DT sources (no network)."""
    names = check_names(names)
    root = Path(root) if root is not None else hub_root()
    files = RepoFiles(dt_source) if dt_source is not None else None
    todo = [SOURCES[n] for n in names if force or not is_complete(root, n)]
    for s in todo:  # every reachability check before the first download
        probe(s, local=files is not None and s.name in ("ethics", "decodingtrust", "dt-prompts"))
    from rich.progress import Progress

    with Progress(disable=not progress or not todo, transient=True) as bar:
        task = bar.add_task("data sources", total=len(todo))
        for s in todo:
            bar.update(task, description=f"{s.name}: {s.origin}")
            _install(s, root, files)
            bar.advance(task)
    return root


def _install(source: Source, root: Path, files: RepoFiles | None) -> None:
    """Fetch ``source`` into a temporary folder, then move its files into ``root`` and mark it."""
    tmp = root / f".tmp-{source.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        written = source.fetch(tmp, files)
        rel = [p.relative_to(tmp) for p in written]
        for r in rel:
            (root / r).parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / r, root / r)
        marker = root / MARKERS / f"{source.name}.json"
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"source": source.name, "origin": source.origin, "created": time.time(),
                                      "files": sorted(map(str, rel))}, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def status(data_dir: Path | None, root: Path | None = None) -> list[dict]:
    """Per source: its origin, whether the local data directory has it, whether the hub cache has it."""
    root = Path(root) if root is not None else hub_root()
    return [{"source": s.name, "origin": s.origin,
             "local": bool(data_dir and (Path(data_dir) / s.check).exists()),
             "hub_cache": is_complete(root, s.name)} for s in SOURCES.values()]
