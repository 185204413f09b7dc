"""Multi-objective Bayesian optimisation with BoTorch: qLogNEHVI (or qLogNParEGO) over the mixed encoding.

Model: one :class:`~botorch.models.SingleTaskGP` with independent outputs (one GP per objective,
batched), inputs the :mod:`~codesign.explore.space` encoding in ``[0, 1]^d``, outcomes standardised
and oriented so that larger is better. The observation noise is fixed, not fitted: a trust score
enters with its sampling variance (the squared standard error of the paired item bootstrap,
:mod:`codesign.explore.uncertainty`), exact costs with a tiny floor (:func:`observation_noise`).

Proposals (``q`` per iteration, sequential greedy conditioning on pending points):

- purely discrete space of at most ``discrete_max`` configurations: enumerate the feasible, not yet
  evaluated configurations and pick with ``optimize_acqf_discrete`` (exact, no relaxation);
- with continuous knobs and at most ``mixed_max_combos`` discrete combinations: ``optimize_acqf_mixed``
  (gradient optimisation of the knobs for every combination);
- otherwise: a pool of discrete combinations x Sobol knob settings scored in batch, then the knobs
  of each pick refined with ``optimize_acqf`` with the discrete part fixed.

Cost constraints are exact and cheap (analytical model), so infeasible configurations are removed
before the acquisition is evaluated instead of being modelled. For the same reason, in a purely
discrete space the cost *objectives* are not modelled either (``exact``, :class:`ExactObjectives`):
the acquisition reads their exact values for every candidate from a lookup table
(:func:`exact_model`), and the GP models only the quality objectives, over the member dimensions
of the encoding, because a quality score depends on the member set alone (the same ensemble under
another schedule or accelerator is the same observation). With knobs (gradient-optimised inputs)
every objective is modelled, as before. The optimizer is cost-aware: the
log-acquisition is lowered by ``member_eval_penalty`` for every member a proposal would have to
quantize and evaluate first (:class:`CostAwareAcquisition`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from botorch.acquisition import AcquisitionFunction

from codesign.explore.space import Configuration, Space

DTYPE = torch.double


class CostAwareAcquisition(AcquisitionFunction):
    """``acq(X) - penalty * (#members in X not yet evaluated and not already pending)``.

    Wraps a log-acquisition, so the penalty divides the expected improvement by ``exp(penalty)``
    per member evaluation a batch would trigger (a member is paid for once per batch).

    Args:
        acqf: the wrapped acquisition function (values on a log scale).
        uncached: ``(n_members,)`` 1.0 for members without stored answers, else 0.0.
        penalty: log-penalty per member evaluation.
    """

    def __init__(self, acqf: AcquisitionFunction, uncached: torch.Tensor, penalty: float):
        super().__init__(model=acqf.model)
        self.acqf = acqf
        self.uncached = uncached
        self.penalty = float(penalty)
        self.X_pending = acqf.X_pending

    def set_X_pending(self, X_pending: torch.Tensor | None = None) -> None:
        self.acqf.set_X_pending(X_pending)
        self.X_pending = X_pending

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """``X``: ``(b, q, d)`` -> ``(b,)``."""
        val = self.acqf(X)
        if self.penalty == 0 or not bool(self.uncached.any()):
            return val
        M = self.uncached.numel()
        need = X[..., :M].clamp(0, 1) * self.uncached  # (b, q, M)
        if self.X_pending is not None and len(self.X_pending):
            covered = self.X_pending[:, :M].clamp(0, 1).max(dim=0).values
            need = need * (1 - covered)
        return val - self.penalty * need.max(dim=-2).values.sum(dim=-1)


def observation_noise(Y: torch.Tensor, Yvar: torch.Tensor | None = None) -> torch.Tensor:
    """``(n, m)`` noise variances the GP is fixed to.

    Costs are exact (analytical model) and a trust score is an estimate from a finite item
    sample: ``Yvar`` holds each observation's sampling variance (squared bootstrap standard
    error; 0 for exact objectives, NaN where unknown). Every entry is floored at 1e-4 of its
    objective's variance over the observations, which keeps exact objectives near-interpolated
    and the kernel matrix well conditioned; without ``Yvar`` every observation gets the floor.
    """
    var = Y.var(dim=0, keepdim=True) if len(Y) > 1 else torch.ones_like(Y[:1])
    floor = (1e-4 * torch.where(var > 0, var, torch.ones_like(var))).expand_as(Y)
    if Yvar is None:
        return floor.clone()
    Yvar = torch.as_tensor(Yvar, dtype=Y.dtype).reshape(Y.shape)
    return torch.maximum(torch.nan_to_num(Yvar, nan=0.0), floor)


def fit_model(X: torch.Tensor, Y: torch.Tensor, Yvar: torch.Tensor | None = None,
              active_dims: Sequence[int] | None = None):
    """Fit a batched independent-output GP with fixed observation noise (:func:`observation_noise`).

    Args:
        X: ``(n, d)`` encodings in ``[0, 1]^d``.
        Y: ``(n, m)`` objectives, larger is better.
        Yvar: ``(n, m)`` observed sampling variances of ``Y`` (None: exact observations).
        active_dims: the input dimensions the objectives depend on (None: all ``d``).

    Returns:
        A fitted :class:`~botorch.models.SingleTaskGP` with ``m`` outputs.
    """
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms.outcome import Standardize
    from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior
    from gpytorch.mlls import ExactMarginalLogLikelihood

    # A fixed noise, not a fitted one: the variances are known (and fitting it is ~5x slower).
    yvar = observation_noise(Y, Yvar)
    covar = None
    if active_dims is not None:  # BoTorch's default kernel and priors, on the active dimensions only
        covar = get_covar_module_with_dim_scaled_prior(
            ard_num_dims=len(active_dims), batch_shape=torch.Size([Y.shape[-1]]) if Y.shape[-1] > 1 else None,
            active_dims=list(active_dims))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant objectives early on are expected, not a data problem
        model = SingleTaskGP(X, Y, train_Yvar=yvar, covar_module=covar,
                             outcome_transform=Standardize(m=Y.shape[-1]))
        mll = ExactMarginalLogLikelihood(model.likelihood, model)
        try:
            fit_gpytorch_mll(mll)
        except Exception:  # noqa: BLE001 - a failed fit keeps the prior hyperparameters; BO goes on
            pass
    return model


@dataclass(frozen=True)
class ExactObjectives:
    """Objectives known exactly for any configuration before it is evaluated (analytical costs).

    Attributes:
        cols: their column indices in the objective vector.
        values: ``configs -> (n, len(cols))`` their maximised values (the same numbers the
            evaluation will report).
    """

    cols: tuple[int, ...]
    values: Callable[[Sequence[Configuration]], np.ndarray]


def binary_keys(X: torch.Tensor) -> torch.Tensor:
    """``(..., d)`` 0/1 encodings -> ``(...)`` exact integer keys (``sum_j x_j 2^j``)."""
    weights = 2.0 ** torch.arange(X.shape[-1], dtype=DTYPE)
    return (X.round().to(DTYPE) * weights).sum(dim=-1)


def exact_model(X_table: torch.Tensor, V_table: torch.Tensor):
    """A deterministic BoTorch model that looks up exact objective values by encoding.

    Args:
        X_table: ``(N, d)`` 0/1 encodings of every configuration the acquisition may see.
        V_table: ``(N, k)`` their exact (maximised) objective values.

    Returns:
        A :class:`~botorch.models.deterministic.GenericDeterministicModel` with ``k`` outputs:
        ``(..., d) -> (..., k)``. An encoding missing from the table raises ``KeyError``.
    """
    from botorch.models.deterministic import GenericDeterministicModel

    keys = binary_keys(X_table)
    order = torch.argsort(keys)
    sorted_keys, values = keys[order], V_table[order]

    def lookup(X: torch.Tensor) -> torch.Tensor:
        k = binary_keys(X)
        idx = torch.searchsorted(sorted_keys, k.contiguous()).clamp(max=len(sorted_keys) - 1)
        if not torch.equal(sorted_keys[idx], k):
            raise KeyError("an encoding outside the exact-objective table")
        return values[idx]

    return GenericDeterministicModel(lookup, num_outputs=V_table.shape[-1])


def infer_ref_point(Y: np.ndarray) -> np.ndarray:
    """Reference point from observed (maximised) objectives: nadir of the front minus 10% of its range.

    Args:
        Y: ``(n, m)`` objectives, larger is better.

    Returns:
        ``(m,)`` reference point.
    """
    from botorch.utils.multi_objective.hypervolume import infer_reference_point

    from codesign.pareto import pareto_mask

    Y = np.asarray(Y, dtype=np.float64)
    front = Y[pareto_mask(Y)]
    ref = infer_reference_point(torch.as_tensor(front, dtype=DTYPE)).numpy()
    # a front of one point (or a flat objective) has zero range: step back by a unit so HV > 0
    flat = np.isclose(front.max(axis=0), front.min(axis=0))
    ref = np.where(flat, front.min(axis=0) - np.maximum(0.1 * np.abs(front.min(axis=0)), 1e-6), ref)
    return ref


def use_built_kernel_only() -> None:
    """Let qLogNEHVI use BoTorch's fused C++ kernel when it is built already, never build it here.

    BoTorch JIT-compiles that kernel (g++ -O3) the first time a process on a machine constructs a
    qLogEHVI-family acquisition: ~50 s of CPU, more than the kernel saves over a study's few
    acquisitions (its pure-Python path computes the same values). When the compiled library is not
    in torch's extension cache, mark the load as attempted so BoTorch takes the Python path; if
    BoTorch's internals differ from what this expects, nothing is changed.
    """
    try:
        from botorch.acquisition.multi_objective import logei
        from torch.utils.cpp_extension import _get_build_directory
    except ImportError:  # pragma: no cover - another BoTorch or torch layout
        return
    if getattr(logei, "_load_attempted", True) or getattr(logei, "_C", None) is not None:
        return
    try:
        import importlib.util

        if importlib.util.find_spec("logei_fused_ext") is not None:  # a prebuilt extension: BoTorch loads it
            return
        built = Path(_get_build_directory("logei_fused_ext", verbose=False)) / "logei_fused_ext.so"
    except Exception:  # noqa: BLE001 - leave BoTorch's own behaviour
        return
    if not built.exists():
        logei._load_attempted = True


class BayesOpt:
    """Proposes batches of configurations from the points evaluated so far.

    Args:
        space: the search space.
        feasible: callable ``configs -> (n,) bool`` (exact cost constraints).
        uncached: callable ``member -> bool``: the member still needs an evaluation.
        algorithm: ``"qlognehvi"`` or ``"qlognparego"``.
        ref_point: ``(m,)`` maximised-space reference point, or ``None`` to infer it each iteration.
        penalty, discrete_max, mixed_max_combos, knob_samples, num_restarts, raw_samples, mc_samples:
            see :class:`~codesign.explore.config.OptimizerConfig`.
        seed: seeds the MC sampler, the ParEGO weights and the candidate pools.
        exact: the objectives known exactly before evaluation (analytical costs): looked up, not
            modelled, in a purely discrete space (module docstring).
    """

    def __init__(self, space: Space, feasible, uncached, *, algorithm: str = "qlognehvi",
                 ref_point: np.ndarray | None = None, penalty: float = 1.0, discrete_max: int = 20000,
                 mixed_max_combos: int = 16, knob_samples: int = 16, num_restarts: int = 4, raw_samples: int = 128,
                 mc_samples: int = 64, seed: int = 0, exact: ExactObjectives | None = None):
        self.space, self.feasible, self.uncached, self.exact = space, feasible, uncached, exact
        self.algorithm, self.ref_point, self.penalty = algorithm, ref_point, penalty
        self.discrete_max, self.mixed_max_combos, self.knob_samples = discrete_max, mixed_max_combos, knob_samples
        self.num_restarts, self.raw_samples, self.mc_samples = num_restarts, raw_samples, mc_samples
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self._discrete: list[Configuration] | None = None
        self._discrete_feasible: np.ndarray | None = None
        self.last_ref_point: np.ndarray | None = None
        self.last_model = None  # the GP of the latest proposal (its fixed noise: observation_noise)
        self.last_surrogate = None  # the latest proposal's model of every objective (GP + exact lookups)

    # -- candidate sets ---------------------------------------------------------------------
    def _combos(self) -> list[Configuration]:
        """Feasible discrete configurations (knobs at mid-range), enumerated once or sampled."""
        if self._discrete is None:
            sp = self.space
            if sp.n_discrete() <= self.discrete_max:
                combos = sp.enumerate()
            else:
                combos = sp.sample(self.discrete_max, seed=self.seed + 7919)
            if not sp.knobs:
                combos = [c for c, ok in zip(combos, self.feasible(combos)) if ok]
            self._discrete = combos
        return self._discrete

    def _pool(self, evaluated: set[Configuration]) -> list[Configuration]:
        sp = self.space
        combos = self._combos()
        if not sp.knobs:
            return [c for c in combos if c not in evaluated]
        from scipy.stats import qmc

        k = self.knob_samples
        if len(combos) * k > self.discrete_max:
            idx = self.rng.choice(len(combos), size=max(1, self.discrete_max // k), replace=False)
            combos = [combos[i] for i in idx]
        U = qmc.Sobol(d=len(sp.knobs), scramble=True, seed=int(self.rng.integers(2**31))).random(k)
        pool = []
        for c in combos:
            for u in U:
                knobs = tuple(sorted((kn.name, kn.from_unit(u[j])) for j, kn in enumerate(sp.knobs)))
                pool.append(sp.canonical(Configuration(c.members, c.schedule, c.spec, knobs)))
        pool = [c for c in dict.fromkeys(pool) if c not in evaluated]
        return [c for c, ok in zip(pool, self.feasible(pool)) if ok] if pool else []

    # -- surrogate --------------------------------------------------------------------------
    def _surrogate(self, configs: Sequence[Configuration], X: torch.Tensor, Y: torch.Tensor,
                   Yvar: torch.Tensor | None, pool: Sequence[Configuration]):
        """``(model, outcomes)``: the model of every objective, and the order that puts its outputs
        back into objective order (``None``: already in order).

        With exact objectives in a discrete space: a GP of the others over the member dimensions
        plus an exact lookup over ``configs`` and ``pool``; otherwise one GP of everything.
        """
        from botorch.models.model import ModelList

        sp, ex = self.space, self.exact
        m = Y.shape[-1]
        modeled = [j for j in range(m) if ex is None or j not in ex.cols]
        table = list(dict.fromkeys([*configs, *pool]))
        usable = ex is not None and not sp.knobs and 0 < len(modeled) < m
        V = np.asarray(ex.values(table), dtype=np.float64) if usable else None
        if V is None or not np.isfinite(V).all():
            self.last_model = fit_model(X, Y, Yvar)
            return self.last_model, None
        self.last_model = fit_model(X, Y[:, modeled], None if Yvar is None else Yvar[:, modeled],
                                    active_dims=range(sp.n_members))
        lookup = exact_model(torch.as_tensor(sp.encode(table), dtype=DTYPE), torch.as_tensor(V, dtype=DTYPE))
        order = modeled + list(ex.cols)
        return ModelList(self.last_model, lookup), [order.index(j) for j in range(m)]

    # -- acquisition ------------------------------------------------------------------------
    def _acquisition(self, model, X: torch.Tensor, Y: torch.Tensor, weights: torch.Tensor | None = None,
                     outcomes: list[int] | None = None):
        from botorch.acquisition.multi_objective.objective import IdentityMCMultiOutputObjective
        from botorch.sampling import SobolQMCNormalSampler
        from botorch.sampling.get_sampler import get_sampler

        shape = torch.Size([self.mc_samples])
        if outcomes is None:
            sampler, objective = SobolQMCNormalSampler(sample_shape=shape, seed=self.seed), None
        else:  # a GP and exact lookups: one seeded sampler per posterior (BoTorch's ListSampler)
            sampler = get_sampler(model.posterior(X[:1]), sample_shape=shape, seed=self.seed)
            objective = IdentityMCMultiOutputObjective(outcomes=outcomes)
        if self.algorithm == "qlognparego":
            from botorch.acquisition.multi_objective.parego import qLogNParEGO

            return qLogNParEGO(model=model, X_baseline=X, scalarization_weights=weights, sampler=sampler,
                               objective=objective, prune_baseline=True)
        from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement

        use_built_kernel_only()
        ref = self.ref_point if self.ref_point is not None else infer_ref_point(Y.numpy())
        self.last_ref_point = np.asarray(ref, dtype=np.float64)
        return qLogNoisyExpectedHypervolumeImprovement(
            model=model, ref_point=torch.as_tensor(ref, dtype=DTYPE).tolist(), X_baseline=X, sampler=sampler,
            objective=objective, prune_baseline=True,
            # cache_root: candidates' joint posteriors by low-rank updates of the baseline's cached
            # Cholesky factor (same proposals, ~15% less CPU on a 2938-configuration space at n=100);
            # BoTorch supports it for GP models only
            cache_root=outcomes is None)

    def _uncached_mask(self) -> torch.Tensor:
        return torch.tensor([1.0 if self.uncached(m) else 0.0 for m in self.space.members], dtype=DTYPE)

    def propose(self, configs: Sequence[Configuration], Y: np.ndarray, q: int,
                Yvar: np.ndarray | None = None) -> list[Configuration]:
        """Next ``q`` configurations (distinct, feasible, not yet evaluated).

        Args:
            configs: the ``n`` evaluated configurations.
            Y: ``(n, m)`` their objectives, larger is better (infeasible points included: the GP
                learns from them; feasibility is handled exactly).
            q: batch size.
            Yvar: ``(n, m)`` sampling variances of ``Y`` (trust: squared bootstrap SE; costs: 0).

        Returns:
            Up to ``q`` configurations (fewer only when the space is exhausted). The same history
            and seed give the same proposals whatever the global random state: every random draw
            (GP fit restarts, baseline pruning, pools) comes from generators seeded by ``seed``
            and the history length.
        """
        # small dense matrices: one thread is faster than several fighting over the cores (and
        # one thread sums in one order: the same inputs give bitwise the same model)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        from linear_operator.utils.warnings import NumericalWarning

        try:
            with torch.random.fork_rng(), warnings.catch_warnings():
                # one ensemble under several schedules or accelerators is one input of the member-only
                # GP: the joint posterior of such duplicates is singular and jitter is the right fix
                warnings.filterwarnings("ignore", category=NumericalWarning)
                torch.manual_seed(self.seed * 1_000_003 + len(configs))
                self.rng = np.random.default_rng([self.seed, len(configs)])
                return self._propose(configs, Y, q, Yvar)
        finally:
            torch.set_num_threads(threads)

    def _propose(self, configs: Sequence[Configuration], Y: np.ndarray, q: int,
                 Yvar: np.ndarray | None = None) -> list[Configuration]:
        from botorch.optim import optimize_acqf_discrete

        sp = self.space
        evaluated = set(configs)
        X = torch.as_tensor(sp.encode(list(configs)), dtype=DTYPE)
        Yt = torch.as_tensor(np.asarray(Y, dtype=np.float64), dtype=DTYPE)
        uncached = self._uncached_mask()
        pool = self._pool(evaluated)
        if not pool:
            return []
        Yvar_t = None if Yvar is None else torch.as_tensor(np.asarray(Yvar, np.float64), dtype=DTYPE)
        model, outcomes = self._surrogate(configs, X, Yt, Yvar_t, pool)
        self.last_surrogate = model
        picks: list[Configuration] = []
        # qLogNParEGO draws new scalarisation weights per candidate (as in the ParEGO paper)
        n_rounds = q if self.algorithm == "qlognparego" else 1
        per_round = 1 if self.algorithm == "qlognparego" else q
        pending: torch.Tensor | None = None
        for _ in range(n_rounds):
            weights = None
            if self.algorithm == "qlognparego":
                from botorch.utils.sampling import sample_simplex

                weights = sample_simplex(Yt.shape[-1], dtype=DTYPE,
                                         seed=int(self.rng.integers(2**31))).squeeze(0)
            acqf = CostAwareAcquisition(self._acquisition(model, X, Yt, weights, outcomes), uncached, self.penalty)
            if pending is not None:
                acqf.set_X_pending(pending)
            remaining = [c for c in pool if c not in picks]
            if not remaining:
                break
            k = min(per_round, len(remaining))
            if sp.knobs and len(self._combos()) <= self.mixed_max_combos:
                new = self._mixed(acqf, k)
            else:
                choices = torch.as_tensor(sp.encode(remaining), dtype=DTYPE)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    cand, _ = optimize_acqf_discrete(acqf, q=k, choices=choices, max_batch_size=512)
                new = sp.decode(cand.numpy())
                if sp.knobs:
                    new = [self._refine(acqf, c) for c in new]
            for c in new:
                if c not in evaluated and c not in picks:
                    picks.append(c)
            enc = torch.as_tensor(sp.encode(picks), dtype=DTYPE) if picks else None
            pending = enc
        # top up (decoded duplicates, infeasible refinements) from the pool, in pool order
        for c in pool:
            if len(picks) >= q:
                break
            if c not in picks:
                picks.append(c)
        return picks[:q]

    def _mixed(self, acqf, k: int) -> list[Configuration]:
        """``optimize_acqf_mixed``: knobs optimised by gradient for every discrete combination."""
        from botorch.optim import optimize_acqf_mixed

        sp = self.space
        combos = self._combos()
        enc = sp.encode(combos)
        fixed = [{d: float(enc[i, d]) for d in sp.discrete_dims} for i in range(len(combos))]
        bounds = torch.stack([torch.zeros(sp.dim, dtype=DTYPE), torch.ones(sp.dim, dtype=DTYPE)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cand, _ = optimize_acqf_mixed(acqf, bounds=bounds, q=k, num_restarts=self.num_restarts,
                                          raw_samples=self.raw_samples, fixed_features_list=fixed)
        out = sp.decode(cand.detach().numpy())
        ok = self.feasible(out)
        return [c for c, f in zip(out, ok) if f]

    def _refine(self, acqf, cfg: Configuration) -> Configuration:
        """Gradient-refine the knobs of one pick with its discrete part fixed; keep it if feasible."""
        from botorch.optim import optimize_acqf

        sp = self.space
        x0 = sp.encode([cfg])[0]
        fixed = {d: float(x0[d]) for d in sp.discrete_dims}
        bounds = torch.stack([torch.zeros(sp.dim, dtype=DTYPE), torch.ones(sp.dim, dtype=DTYPE)])
        ic = torch.as_tensor(x0, dtype=DTYPE).reshape(1, 1, -1)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cand, _ = optimize_acqf(acqf, bounds=bounds, q=1, num_restarts=1, batch_initial_conditions=ic,
                                        fixed_features=fixed, options={"maxiter": 50})
        except Exception:  # noqa: BLE001 - keep the pool point
            return cfg
        new = sp.decode(cand.detach().numpy())[0]
        return new if bool(self.feasible([new])[0]) else cfg
