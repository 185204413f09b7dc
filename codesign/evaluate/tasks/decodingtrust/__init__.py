"""The ``decodingtrust`` protocol's tasks: DecodingTrust's machine-ethics, AdvGLUE, OOD and Adult
fairness perspectives as the Decoding Compressed Trust fork (decoding-comp-trust/DecodingTrust@0cf3fc1)
runs and scores them, plus the study's 5-shot MMLU. Importing this package registers them."""

from codesign.evaluate.tasks.decodingtrust import advglue, ethics, fairness, mmlu, ood  # noqa: F401
