"""Precision-ensemble voting over stored answers: scoring ensembles, all subsets, bootstrap CIs."""
