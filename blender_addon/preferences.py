"""Add-on preferences: what was found for the GPU, and how to add GPU support."""
import sys

import bpy

GPU_HELP = (
    "GPU support needs CuPy for CUDA 12, version 13.6 (it matches Blender's NumPy 1.26;",
    "CuPy 14 needs NumPy 2). Install it into Blender's Python, for example:",
    "  <blender python> -m pip install cupy-cuda12x==13.6.0",
    "and a CUDA 12 driver. Without it the bake runs on the CPU (NumPy), same results.",
)


class CupyNoisePreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    def draw(self, context):
        from .bake import device_info
        info = device_info()
        col = self.layout.column()
        col.label(text=f"CuPy: {info['cupy'] or 'not installed'}",
                  icon="CHECKMARK" if info["cupy"] else "ERROR")
        col.label(text=f"GPU: {info['gpu'] or info['error']}")
        col.label(text=f"Python: {sys.executable}")
        box = col.box()
        for line in GPU_HELP:
            box.label(text=line)
        col.operator("cupy_noise.refresh_device", icon="FILE_REFRESH")


classes = (CupyNoisePreferences,)


register, unregister = bpy.utils.register_classes_factory(classes)
