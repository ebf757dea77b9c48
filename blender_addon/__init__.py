"""Warped noise: bake temporally coherent Gaussian noise (integral noise warping,
Deng et al. 2024) from the scene's motion vectors. The compute core is ``cupy_core``
(a bundled wheel in the installed extension; the repository root in a checkout)."""
from . import operators, panels, preferences, properties

_modules = (properties, operators, preferences, panels)


def register():
    for m in _modules:
        m.register()


def unregister():
    for m in reversed(_modules):
        m.unregister()
