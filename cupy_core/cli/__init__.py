"""The command lines: ``python -m cupy_core FLOWS`` (``flow``) and ``python -m
cupy_core surface`` (``surface``), with what they share (``common``)."""
