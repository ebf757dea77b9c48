"""The GPU check's section of BENCHMARKS.md, between two markers: ``gpu_check``
writes it, and a rerun of the CPU benchmark (``run.write_markdown``) keeps it."""
import re
from pathlib import Path

BEGIN = "<!-- gpu-check:begin (generated: python build.py gpu-check --render DIR) -->"
END = "<!-- gpu-check:end -->"
BEGIN_RE = re.compile(r"<!-- gpu-check:begin\b[^>]*-->")


def merge_section(text, section):
    """``text`` with its GPU section (between the markers) replaced by ``section``, or
    ``section`` appended where it has none."""
    section = section.rstrip("\n")
    m = BEGIN_RE.search(text)
    if m is not None:
        e = text.find(END, m.end())
        if e >= 0:
            return text[:m.start()] + section + text[e + len(END):]
    return text.rstrip("\n") + "\n\n" + section + "\n"


def carry_section(path, new_text):
    """Keep the GPU section that ``path`` has (a rerun of the
    CPU benchmark must not drop it)."""
    try:
        old = Path(path).read_text()
    except OSError:
        return new_text
    m = BEGIN_RE.search(old)
    e = old.find(END, m.end()) if m else -1
    if m is None or e < 0:
        return new_text
    return merge_section(new_text, old[m.start():e + len(END)])
