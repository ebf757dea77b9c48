import os
import sys

# Tests run against the checkout, installed or not.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# tests/blender/ needs bpy (build.py runs it in .venv-bpy42 and .venv-bpy50).
import importlib.util as _ilu  # noqa: E402
collect_ignore = [] if _ilu.find_spec("bpy") is not None else ["blender"]


if _ilu.find_spec("numpy") is not None and _ilu.find_spec("bpy") is None:
    import pytest  # noqa: E402

    @pytest.fixture
    def flows_file(tmp_path):
        """``flows.npy`` of ``maps.smooth_flows()`` (3 flows of 16 x 16)."""
        import numpy as np
        from maps import smooth_flows
        path = tmp_path / "flows.npy"
        np.save(path, smooth_flows())
        return path


def pytest_terminal_summary(terminalreporter):
    """The register/stack/spill table of tests/methods/test_nvrtc.py (tests/nvrtc.py collects
    it), shown whether the tests pass or fail, with or without -s."""
    report = sys.modules.get("nvrtc")
    lines = getattr(report, "summary_lines", lambda: [])()
    if lines:
        terminalreporter.section("NVRTC: registers, stack, spills")
        for line in lines:
            terminalreporter.write_line(line)
