"""Warped noise: bake temporally coherent Gaussian noise (integral noise warping,
Deng et al. 2024) from a Blender scene: its rendered motion vectors, an EXR sequence,
its meshes (surface or screen noise), or a volume domain moved by objects, a fluid
cache or velocity files. ``bake.run_bake`` is the one road from the scene to the
files (the panel's operator and headless.py both call it). The compute core is
``cupy_core`` (a bundled wheel in the installed extension; the repository root in a
checkout)."""
from . import operators, panels, preferences, properties

_modules = (properties, operators, preferences, panels)


def activate_gpu_support():
    """Put the GPU support installed from the preferences (CuPy, NVRTC) on sys.path
    before anything imports cupy. Never stops the add-on from registering."""
    from . import gpu_support
    try:
        act = gpu_support.activate(gpu_support.folder_for(__package__))
    except Exception as exc:  # a broken folder must not stop registration
        print(f"cupy_noise: GPU support not activated: {exc}")
        return None
    if act is not None and act.error:
        print(f"cupy_noise: GPU support not activated: {act.error}")
    return act


def register():
    activate_gpu_support()
    for m in _modules:
        m.register()


def unregister():
    for m in reversed(_modules):
        m.unregister()
