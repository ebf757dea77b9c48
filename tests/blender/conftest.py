"""Add-on tests: run with bpy from PyPI (build.py's .venv-bpy42 / .venv-bpy50).
bpy is imported first, before NumPy or the add-on, as Blender itself would."""
import bpy  # noqa: F401  (first)

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "sample_scenes"))

import blender_addon  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def addon():
    blender_addon.register()
    yield blender_addon
    blender_addon.unregister()


@pytest.fixture
def shift_scene():
    """The ``shift`` sample scene, freshly built: a square moving 3 px right and 2 px up
    per frame, frames 1-5, under a static orthographic camera."""
    import blender_scenes
    return blender_scenes.shift_scene(dx=3, dy=2, frames=5)


@pytest.fixture(scope="session")
def shift_blend(tmp_path_factory):
    import blender_scenes
    path = str(tmp_path_factory.mktemp("scenes") / "shift.blend")
    blender_scenes.save("shift", path)
    return path


_EXIT = {"status": 0}


def pytest_sessionfinish(session, exitstatus):
    _EXIT["status"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """bpy 4.2 from PyPI crashes (SIGSEGV) while the interpreter shuts down, after
    every test has passed; leave with pytest's own exit status before that."""
    if bpy.app.version < (4, 3, 0):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT["status"])


@pytest.fixture
def domain_scene():
    """An empty scene, frames 1-4, with a 2 x 2 x 2 cube "Domain" centred at (1, 0, 0):
    the volume tests' domain box."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    sc = bpy.context.scene
    sc.frame_start, sc.frame_end = 1, 4
    bpy.ops.mesh.primitive_cube_add(size=2.0, location=(1, 0, 0))
    bpy.context.active_object.name = "Domain"
    return sc
