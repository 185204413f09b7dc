"""Where benchmark data comes from, before the pipeline starts (quantize -> evaluate -> ...).

- :mod:`codesign.data.hub`: the public sources of each benchmark, materialised into the on-disk
  layout the task loaders read (``--data-dir hub`` / ``CODESIGN_DATA=hub``), with a cache.
- :mod:`codesign.data.dt_prompts`: DecodingTrust's prompt material read out of its source code.
- :mod:`codesign.data.repo`: a repository's files at a pinned commit (local clone or GitHub).

``codesign data`` is the command line of all three.
"""
