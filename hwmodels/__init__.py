"""Accelerator specs (YAML, one file per accelerator), model shapes, and the analytical PPA/roofline model."""
