"""Evaluation protocols: which prompts, message layouts, generation budgets, parsers and score
formulas turn a model into trust numbers.

A protocol is a named family of tasks (one per dimension, see :mod:`codesign.evaluate.tasks`)
plus the scoring policies it allows. Every stored item and answer carries its protocol, so the
two never mix in one score.

- ``decodingtrust`` reproduces the DecodingTrust fork used by the Decoding Compressed Trust
  study (decoding-comp-trust/DecodingTrust@0cf3fc1): its prompts and demonstrations (read from
  ``decodingtrust/prompts/*.json`` in the data directory), its chat message lists, its
  ``max_tokens``, its answer parsing and its score formulas (accuracy over all items: refusals and
  unparseable answers count as errors). One policy, ``decodingtrust``: DT's formulas.
- ``codesign`` is codesign's own protocol: its own prompts, a stricter three-valued parser
  (label / refused / invalid, opening-label rule) and two policies: ``answered`` (metrics over
  items not refused; an invalid answer is a wrong answer) and ``strict`` (every item counts; a
  refusal is wrong).

Add a protocol: register a :class:`Protocol` below and put its tasks (``Task`` subclasses with
``protocol = "<name>"``) in the modules it lists.
"""

from __future__ import annotations

from dataclasses import dataclass

from codesign.config import ConfigError
from codesign.records import DEFAULT_PROTOCOL


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol.

    Attributes:
        name: the name stored with every item and answer (``--protocol``).
        summary: one line for help texts and tables.
        policies: scoring policies it allows; the first is the default.
        task_modules: modules whose import registers the protocol's tasks.
    """

    name: str
    summary: str
    policies: tuple[str, ...]
    task_modules: tuple[str, ...]

    @property
    def default_policy(self) -> str:
        return self.policies[0]


PROTOCOLS: dict[str, Protocol] = {}


def register_protocol(protocol: Protocol) -> Protocol:
    """Add ``protocol`` to :data:`PROTOCOLS` (a policy name may belong to one protocol only)."""
    for other in PROTOCOLS.values():
        shared = set(other.policies) & set(protocol.policies)
        if other.name != protocol.name and shared:
            raise ValueError(f"protocol {protocol.name!r}: policies {sorted(shared)} belong to {other.name!r}")
    PROTOCOLS[protocol.name] = protocol
    return protocol


register_protocol(Protocol(
    "decodingtrust",
    "DecodingTrust (decoding-comp-trust fork 0cf3fc1): its prompts, layouts, max_tokens, parsing and formulas",
    ("decodingtrust",),
    ("codesign.evaluate.tasks.decodingtrust",),
))
register_protocol(Protocol(
    "codesign",
    "codesign's own prompts with a stricter three-valued parser (label / refused / invalid)",
    ("answered", "strict"),
    ("codesign.evaluate.tasks.mmlu", "codesign.evaluate.tasks.advglue", "codesign.evaluate.tasks.fairness",
     "codesign.evaluate.tasks.ethics", "codesign.evaluate.tasks.ood"),
))


def protocol_names() -> list[str]:
    return list(PROTOCOLS)


def get_protocol(name: str | None = None) -> Protocol:
    """The protocol called ``name`` (``None``: :data:`~codesign.records.DEFAULT_PROTOCOL`)."""
    name = DEFAULT_PROTOCOL if name is None else name
    if name not in PROTOCOLS:
        raise ConfigError(f"--protocol: {name!r} is not an evaluation protocol (allowed: {protocol_names()})")
    return PROTOCOLS[name]


def protocol_of_policy(policy: str) -> str:
    """The protocol a scoring policy belongs to (each policy belongs to exactly one)."""
    for p in PROTOCOLS.values():
        if policy in p.policies:
            return p.name
    allowed = {p.name: list(p.policies) for p in PROTOCOLS.values()}
    raise ConfigError(f"--policy: {policy!r} is not a scoring policy (allowed, by protocol: {allowed})")


def resolve_scoring(protocol: str | None = None, policy: str | None = None) -> tuple[str, str]:
    """Validated ``(protocol, policy)``: a missing policy is the protocol's default; a missing
    protocol is the one the policy belongs to, else the default protocol."""
    if protocol is None and policy is not None:
        protocol = protocol_of_policy(policy)
    p = get_protocol(protocol)
    if policy is None:
        return p.name, p.default_policy
    if policy not in p.policies:
        owner = protocol_of_policy(policy)  # an unknown policy fails here, listing every protocol's
        raise ConfigError(f"--policy: {policy!r} is not a policy of protocol {p.name!r} "
                          f"(allowed: {list(p.policies)}); {policy!r} is a policy of --protocol {owner}")
    return p.name, policy


def legacy_scoring(config: dict) -> tuple[str, str]:
    """``(protocol, policy)`` of a stored study config; configs written before protocols existed
    (no ``protocol`` key) scored codesign answers, and their policy ``decodingtrust`` then meant
    today's ``answered``."""
    if "protocol" in config:
        return resolve_scoring(config.get("protocol"), config.get("policy"))
    policy = config.get("policy") or "answered"
    return "codesign", {"decodingtrust": "answered"}.get(policy, policy)


__all__ = ["DEFAULT_PROTOCOL", "PROTOCOLS", "Protocol", "get_protocol", "legacy_scoring", "protocol_names",
           "protocol_of_policy", "register_protocol", "resolve_scoring"]
