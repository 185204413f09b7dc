"""Turn the ``codesign export`` target into the variants to write.

A target is one variant or an ensemble of several, joined by ``+`` or ``,`` (``vote(a+b+c)`` as
``codesign vote`` prints it also works). Each name is a variant id, a short name
(``gptq-w4g128``, ``dense``) or a unique prefix of either, looked up in the result store given
with ``--store`` or else among the variants in the cache; a path to a cache entry folder works too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from codesign.config import ConfigError
from codesign.quantize import cache
from codesign.records import VariantSpec


@dataclass(frozen=True)
class Member:
    spec: VariantSpec
    entry: Path | None  # the cache entry, None when not cached (or dense)


def split_target(target: str) -> list[str]:
    """``"vote(a+b)"`` / ``"a+b"`` / ``"a,b"`` -> ``["a", "b"]``."""
    text = target.strip()
    if text.startswith("vote(") and text.endswith(")"):
        text = text[len("vote("):-1]
    names = [n.strip() for n in text.replace(",", "+").split("+") if n.strip()]
    if not names:
        raise ConfigError(f"export target {target!r} names no variant (allowed: a variant id, short name or "
                          "prefix, or several joined by '+' for an ensemble)")
    return names


def _match(name: str, ids: list[str], shorts: dict[str, list[str]], where: str) -> str:
    """The one id ``name`` denotes: an id, a short name or a unique prefix of either."""
    if name in ids:
        return name
    match = shorts.get(name) or [v for v in ids if v.startswith(name)]
    if not match:
        match = sorted({v for s, vs in shorts.items() if s.startswith(name) for v in vs})
    if len(match) != 1:
        what = "matches no variant" if not match else f"is ambiguous (matches {match})"
        raise ConfigError(f"export: {name!r} {what} in {where} (allowed: variant ids, short names "
                          f"{sorted(shorts)} or unique prefixes of either)")
    return match[0]


def from_cache(names: list[str], root: Path | None) -> list[Member]:
    """Members looked up among the complete entries of the variant cache."""
    root = Path(root) if root else cache.default_root()
    records = cache.list_entries(root)
    specs = {r["variant_id"]: VariantSpec.from_dict(r["spec"]) for r in records}
    shorts: dict[str, list[str]] = {}
    for vid, s in specs.items():
        shorts.setdefault(s.short_name, []).append(vid)
    out = []
    for name in names:
        path = Path(name)
        if path.is_dir() and cache.is_complete(path):
            rec = cache.read_record(path)
            out.append(Member(VariantSpec.from_dict(rec["spec"]), path))
        elif name == "dense":
            out.append(Member(VariantSpec(model=""), None))  # the model of the quantized members, below
        else:
            vid = _match(name, sorted(specs), shorts, f"the variant cache {root}")
            out.append(Member(specs[vid], root / vid))
    return _dense_model_of(out)


def from_store(names: list[str], store_path: Path, root: Path | None) -> list[Member]:
    """Members looked up in a result store (read only; their weights come from the cache)."""
    from codesign.store import ResultStore
    from codesign.vote.ensemble import resolve_members

    with ResultStore(store_path, read_only=True) as st:
        try:
            ids = resolve_members(st, names)
        except ConfigError as exc:  # its messages name the vote command's flag
            raise ConfigError(str(exc).replace("--members:", "export:", 1)) from None
        specs = [st.variant_spec(v) for v in ids]
    return [Member(s, None if s.is_dense else cache.lookup(s.variant_id, root)) for s in specs]


def _dense_model_of(members: list[Member]) -> list[Member]:
    """A cache lookup of 'dense' means the unquantized model of the ensemble's quantized members."""
    if all(m.spec.model for m in members):
        return members
    models = sorted({m.spec.model for m in members if m.spec.model})
    if len(models) != 1:
        raise ConfigError(f"export: 'dense' stands for the unquantized model of the other members, which name "
                          f"{models or 'no model'} (allowed: dense beside quantized variants of one model)")
    return [Member(VariantSpec(model=models[0]), None) if not m.spec.model else m for m in members]


def resolve_target(target: str, store: Path | None = None, root: Path | None = None) -> list[Member]:
    """The members ``target`` names, in the order given; all of one model, none twice."""
    names = split_target(target)
    members = from_store(names, store, root) if store is not None else from_cache(names, root)
    ids = [m.spec.variant_id for m in members]
    twice = sorted({v for v in ids if ids.count(v) > 1})
    if twice:
        raise ConfigError(f"export target {target!r} names {twice} more than once")
    models = sorted({m.spec.model for m in members})
    if len(models) > 1:
        raise ConfigError(f"export target {target!r} mixes models {models} (allowed: an ensemble of one model's "
                          "variants)")
    if len(members) == 1 and members[0].spec.is_dense:
        raise ConfigError(f"export target {target!r} is the unquantized model: nothing to write in a quantized "
                          "format (allowed: a quantized variant, or an ensemble that includes dense)")
    return members
