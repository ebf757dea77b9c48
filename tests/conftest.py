import os
import sys

# Tests run against the checkout, installed or not.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# tests/blender/ needs bpy (build.py runs it in .venv-bpy42 and .venv-bpy50).
import importlib.util as _ilu  # noqa: E402
collect_ignore = [] if _ilu.find_spec("bpy") is not None else ["blender"]
