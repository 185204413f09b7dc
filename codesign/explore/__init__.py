"""Exploration: BoTorch multi-objective Bayesian optimisation over ensembles, schedules and accelerator knobs."""
