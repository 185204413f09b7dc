"""codesign: hardware-software co-design exploration for trustworthy low-precision LLM inference.

Pipeline (data flows one way): quantize -> evaluate -> vote -> cost -> explore -> report.
"""

__version__ = "0.1.0"
