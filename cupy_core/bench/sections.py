"""Sections of BENCHMARKS.md that other tools write, between markers: the GPU check's
(``gpu_check --render``) and the counted work of the kernels (written by hand from
``tests/cuda_emulation/count_work.py``). A rerun of the CPU benchmark
(``run.write_markdown``) regenerates the rest of the file and keeps them."""
import re
from pathlib import Path

BEGIN = "<!-- gpu-check:begin (generated: python build.py gpu-check --render DIR) -->"
END = "<!-- gpu-check:end -->"
BEGIN_RE = re.compile(r"<!-- gpu-check:begin\b[^>]*-->")
# Every kept section: "<!-- NAME:begin ... -->" ... "<!-- NAME:end -->".
_KEPT = re.compile(r"<!-- ([\w-]+):begin\b[^>]*-->.*?<!-- \1:end -->", re.S)


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
    """``new_text`` with the kept sections that ``path`` has (a rerun of the CPU
    benchmark must not drop them): each replaces its namesake in ``new_text`` or is
    appended."""
    try:
        old = Path(path).read_text()
    except OSError:
        return new_text
    for m in _KEPT.finditer(old):
        name, block = m.group(1), m.group(0)
        mine = re.search(r"<!-- " + re.escape(name) + r":begin\b[^>]*-->.*?<!-- "
                         + re.escape(name) + r":end -->", new_text, re.S)
        if mine is not None:
            new_text = new_text[:mine.start()] + block + new_text[mine.end():]
        else:
            new_text = new_text.rstrip("\n") + "\n\n" + block + "\n"
    return new_text
