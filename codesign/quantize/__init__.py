"""Quantization: native RTN, GPTQ and AWQ in plain torch, a variant catalogue, a checkpoint cache, and import of AutoGPTQ/AutoAWQ checkpoints."""
