"""The co-design search space and its encoding for the GP.

A configuration is an ensemble (a non-empty set of catalogue members), a schedule, an accelerator
spec and values for the accelerator knobs. The GP sees it as a point of ``[0, 1]^d``::

    x = [membership bits (M) | one-hot schedule (S) | one-hot spec (P) | normalised knobs (K)]

(one-hot blocks of a single choice are dropped: they carry no information). :meth:`Space.decode`
maps any point of the cube back to a valid configuration (bits rounded, ensemble size clipped to
``[min_members, max_members]`` by keeping the largest coordinates, one-hots by argmax), so Sobol
samples, NSGA-II individuals and relaxed acquisition optima all decode to something evaluable.

A single-member "ensemble" does not depend on the schedule; such configurations are canonicalised
to the first schedule so they are neither counted nor evaluated twice.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from codesign.records import Configuration

__all__ = ["Configuration", "Knob", "Space"]


@dataclass(frozen=True)
class Knob:
    """One continuous accelerator knob with its range (``log``: normalised on a log scale)."""

    name: str
    low: float
    high: float
    log: bool = False
    integer: bool = False

    def to_unit(self, v: float) -> float:
        if self.high == self.low:
            return 0.0
        if self.log:
            return (math.log(v) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (v - self.low) / (self.high - self.low)

    def from_unit(self, u: float) -> float:
        u = min(max(float(u), 0.0), 1.0)
        if self.log:
            v = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:
            v = self.low + u * (self.high - self.low)
        return float(round(v)) if self.integer else float(v)


@dataclass
class Space:
    """Search space over ensembles x schedules x specs x knobs.

    Args:
        members: catalogue variant ids (the order defines the membership bits).
        schedules: schedule policy names.
        specs: accelerator spec names.
        knobs: continuous knobs (empty for a purely discrete space).
        min_members, max_members: allowed ensemble sizes.
    """

    members: list[str]
    schedules: list[str]
    specs: list[str]
    knobs: list[Knob] = field(default_factory=list)
    min_members: int = 1
    max_members: int = 3

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError("the search space needs at least one catalogue member")
        if len(set(self.members)) != len(self.members):
            raise ValueError("catalogue members repeat")
        self.max_members = min(self.max_members, len(self.members))
        if self.min_members > self.max_members:
            raise ValueError(f"min_members={self.min_members} exceeds the {len(self.members)} catalogue members")
        self._index = {m: i for i, m in enumerate(self.members)}

    # -- layout -----------------------------------------------------------------------------
    @property
    def n_members(self) -> int:
        return len(self.members)

    @property
    def _s_dims(self) -> int:
        return len(self.schedules) if len(self.schedules) > 1 else 0

    @property
    def _p_dims(self) -> int:
        return len(self.specs) if len(self.specs) > 1 else 0

    @property
    def dim(self) -> int:
        """Width ``d`` of the encoding."""
        return self.n_members + self._s_dims + self._p_dims + len(self.knobs)

    @property
    def discrete_dims(self) -> list[int]:
        return list(range(self.n_members + self._s_dims + self._p_dims))

    @property
    def knob_dims(self) -> list[int]:
        start = self.n_members + self._s_dims + self._p_dims
        return list(range(start, start + len(self.knobs)))

    # -- canonical form ---------------------------------------------------------------------
    def canonical(self, cfg: Configuration) -> Configuration:
        members = tuple(sorted(cfg.members, key=self._index.__getitem__))
        schedule = self.schedules[0] if len(members) == 1 else cfg.schedule
        knobs = tuple(sorted((k.name, k.from_unit(k.to_unit(dict(cfg.knobs)[k.name]))) for k in self.knobs))
        return Configuration(members, schedule, cfg.spec, knobs)

    # -- encode / decode --------------------------------------------------------------------
    def encode(self, configs: Sequence[Configuration]) -> np.ndarray:
        """Configurations -> ``(n, d)`` float64 array in ``[0, 1]^d``."""
        X = np.zeros((len(configs), self.dim))
        for r, c in enumerate(configs):
            for m in c.members:
                X[r, self._index[m]] = 1.0
            off = self.n_members
            if self._s_dims:
                X[r, off + self.schedules.index(c.schedule)] = 1.0
                off += self._s_dims
            if self._p_dims:
                X[r, off + self.specs.index(c.spec)] = 1.0
                off += self._p_dims
            kv = dict(c.knobs)
            for j, k in enumerate(self.knobs):
                X[r, off + j] = k.to_unit(kv[k.name])
        return X

    def decode(self, X: np.ndarray) -> list[Configuration]:
        """``(n, d)`` points of the cube -> valid configurations (see module docstring)."""
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        if X.shape[1] != self.dim:
            raise ValueError(f"expected points of width {self.dim}, got shape {X.shape}")
        out = []
        M = self.n_members
        for x in X:
            bits = x[:M]
            order = np.argsort(-bits, kind="stable")
            k = int(np.clip((bits >= 0.5).sum(), self.min_members, self.max_members))
            members = tuple(self.members[i] for i in sorted(order[:k]))
            off = M
            schedule = self.schedules[0]
            if self._s_dims:
                schedule = self.schedules[int(np.argmax(x[off: off + self._s_dims]))]
                off += self._s_dims
            spec = self.specs[0]
            if self._p_dims:
                spec = self.specs[int(np.argmax(x[off: off + self._p_dims]))]
                off += self._p_dims
            knobs = tuple(sorted((kn.name, kn.from_unit(x[off + j])) for j, kn in enumerate(self.knobs)))
            out.append(self.canonical(Configuration(members, schedule, spec, knobs)))
        return out

    # -- enumeration ------------------------------------------------------------------------
    def n_ensembles(self) -> int:
        return sum(math.comb(self.n_members, k) for k in range(self.min_members, self.max_members + 1))

    def n_discrete(self) -> int:
        """Number of distinct discrete configurations (ensemble x schedule x spec)."""
        singles = self.n_members if self.min_members <= 1 else 0
        multi = self.n_ensembles() - singles
        return (singles + multi * len(self.schedules)) * len(self.specs)

    def ensembles(self) -> list[tuple[str, ...]]:
        """Every allowed member set, by size then catalogue order."""
        return [tuple(self.members[i] for i in combo)
                for k in range(self.min_members, self.max_members + 1)
                for combo in itertools.combinations(range(self.n_members), k)]

    def enumerate(self, knob_values: dict[str, float] | None = None) -> list[Configuration]:
        """Every discrete configuration; knobs fixed to ``knob_values`` (default: each range's midpoint)."""
        kv = dict(knob_values or {})
        knobs = tuple(sorted((k.name, kv.get(k.name, k.from_unit(0.5))) for k in self.knobs))
        out = []
        for spec in self.specs:
            for ens in self.ensembles():
                for sched in (self.schedules[:1] if len(ens) == 1 else self.schedules):
                    out.append(Configuration(ens, sched, spec, knobs))
        return out

    def sample(self, n: int, seed: int = 0) -> list[Configuration]:
        """``n`` distinct configurations from a scrambled Sobol sequence (fewer if the space is smaller).

        Membership is drawn so every ensemble size is equally likely first, then members uniformly:
        plain Sobol bits would put almost all mass on ensembles of size ``M/2`` and then clip.
        """
        from scipy.stats import qmc

        rng = np.random.default_rng(seed)
        sobol = qmc.Sobol(d=self.dim + 1, scramble=True, seed=seed)
        seen: dict[Configuration, None] = {}
        cap = self.n_discrete() if not self.knobs else None
        tries = 0
        while len(seen) < n and (cap is None or len(seen) < cap) and tries < 50:
            tries += 1
            U = sobol.random(max(8, 2 ** math.ceil(math.log2(max(n, 2)))))
            X = U[:, :-1].copy()
            sizes = self.min_members + np.floor(U[:, -1] * (self.max_members - self.min_members + 1)).astype(int)
            M = self.n_members
            for r in range(len(X)):
                chosen = rng.choice(M, size=min(sizes[r], M), replace=False)
                X[r, :M] = 0.0
                X[r, chosen] = 1.0
            for c in self.decode(X):
                seen.setdefault(c, None)
                if len(seen) >= n:
                    break
        return list(seen)[:n]
