"""Evaluation: a task registry (MMLU and four DecodingTrust-style trust dimensions), answer parsing with refusals, batched generation and log-likelihood scoring into the result store."""
