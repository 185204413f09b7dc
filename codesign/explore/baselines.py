"""Baseline searchers in the same harness as BO: random (Sobol), exhaustive enumeration, NSGA-II (pymoo).

Every searcher answers ``propose(configs, Y, q) -> list[Configuration]`` given the configurations
evaluated so far and their objectives ``Y`` ``(n, m)`` (larger is better); the study driver
evaluates, stores and counts them, so all methods share one budget accounting (distinct
configurations evaluated) and one resume mechanism (replaying the stored history).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from codesign.explore.space import Configuration, Space


class RandomSearch:
    """Scrambled-Sobol configurations (:meth:`Space.sample`), feasible ones only, in a fixed order.

    Feasibility is checked lazily (a configuration with new knob values costs one hardware-model
    call), so only as much of the sequence is costed as the search consumes.
    """

    name = "random"

    def __init__(self, space: Space, feasible: Callable[[Sequence[Configuration]], np.ndarray], seed: int = 0,
                 pool: int = 4096):
        self._sample = space.sample(min(pool, space.n_discrete()) if not space.knobs else pool, seed=seed)
        self._feasible = feasible
        self._checked = 0
        self._order: list[Configuration] = []

    def take(self, n: int, skip: set[Configuration] | frozenset = frozenset()) -> list[Configuration]:
        """The first ``n`` feasible configurations of the sequence that are not in ``skip``."""
        out = [c for c in self._order if c not in skip][:n]
        while len(out) < n and self._checked < len(self._sample):
            chunk = self._sample[self._checked: self._checked + max(16, n - len(out))]
            self._checked += len(chunk)
            ok = self._feasible(chunk)
            new = [c for c, f in zip(chunk, ok) if f]
            self._order += new
            out += [c for c in new if c not in skip][: n - len(out)]
        return out

    @property
    def order(self) -> list[Configuration]:
        """The whole feasible sequence (costs every sampled configuration)."""
        self.take(len(self._sample) + 1)
        return self._order

    def propose(self, configs: Sequence[Configuration], Y: np.ndarray, q: int) -> list[Configuration]:
        return self.take(q, set(configs))


class Exhaustive:
    """Every feasible discrete configuration (knobs at their range midpoints)."""

    name = "exhaustive"

    def __init__(self, space: Space, feasible: Callable[[Sequence[Configuration]], np.ndarray]):
        allc = space.enumerate()
        self.order = [c for c, f in zip(allc, feasible(allc)) if f]

    def propose(self, configs: Sequence[Configuration], Y: np.ndarray, q: int) -> list[Configuration]:
        seen = set(configs)
        return [c for c in self.order if c not in seen][:q]


class NSGA2Search:
    """NSGA-II (pymoo, ask/tell) on the relaxed encoding ``[0, 1]^d``, decoded by :meth:`Space.decode`.

    Infeasible individuals (cost constraints, known exactly) are never evaluated: pymoo sees them
    through a constraint violation. Individuals that decode to an already evaluated configuration
    are answered from the history without spending budget, which also makes a resumed run replay
    the stored generations deterministically.
    """

    name = "nsga2"

    def __init__(self, space: Space, feasible: Callable[[Sequence[Configuration]], np.ndarray], n_obj: int,
                 seed: int = 0, pop_size: int = 8, initial: Sequence[Configuration] | None = None):
        from pymoo.algorithms.moo.nsga2 import NSGA2
        from pymoo.core.population import Population
        from pymoo.core.problem import Problem

        self.space, self.feasible, self.n_obj = space, feasible, n_obj
        problem = Problem(n_var=space.dim, n_obj=n_obj, n_ieq_constr=1, xl=0.0, xu=1.0)
        sampling = None
        if initial:
            X0 = space.encode(list(initial)[:pop_size])
            if len(X0) < pop_size:  # pad with uniform draws
                rng = np.random.default_rng(seed)
                X0 = np.vstack([X0, rng.random((pop_size - len(X0), space.dim))])
            sampling = Population.new("X", X0)
        kwargs = {"sampling": sampling} if sampling is not None else {}
        self.algorithm = NSGA2(pop_size=pop_size, **kwargs)
        self.algorithm.setup(problem, seed=seed, verbose=False)
        self._pop = None
        self._configs: list[Configuration] = []

    def _tell(self, lookup: dict[Configuration, np.ndarray]) -> bool:
        """Tell the pending population if every feasible member is known; True on success."""
        feas = self.feasible(self._configs)
        F = np.zeros((len(self._configs), self.n_obj))
        G = np.zeros((len(self._configs), 1))
        for i, (c, ok) in enumerate(zip(self._configs, feas)):
            if not ok:
                F[i], G[i] = 1e12, 1.0
            elif c in lookup:
                F[i] = -lookup[c]  # pymoo minimises
            else:
                return False
        self._pop.set("F", F, "G", G)
        self.algorithm.tell(infills=self._pop)
        self._pop = None
        return True

    def propose(self, configs: Sequence[Configuration], Y: np.ndarray, q: int) -> list[Configuration]:
        Y = np.asarray(Y, dtype=np.float64).reshape(len(configs), self.n_obj) if len(configs) else Y
        lookup = {c: Y[i] for i, c in enumerate(configs)}
        # worst observed value for objectives that came back NaN (e.g. a score with no answered item)
        for c, y in lookup.items():
            if np.isnan(y).any():
                lookup[c] = np.where(np.isnan(y), np.nanmin(Y, axis=0), y)
        for _ in range(1000):
            if self._pop is not None and not self._tell(lookup):
                todo = [c for c, ok in zip(self._configs, self.feasible(self._configs)) if ok and c not in lookup]
                return list(dict.fromkeys(todo))
            self._pop = self.algorithm.ask()
            self._configs = self.space.decode(self._pop.get("X"))
        return []  # the population only revisits known configurations: the search has converged
