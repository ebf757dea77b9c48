"""Add-on preferences: what was found for the GPU, and how to add GPU support."""
import sys

import bpy

GPU_HELP = (
    "GPU support needs an NVIDIA driver (CUDA 12 or 13) and CuPy with its CUDA compiler",
    "(NVRTC). Install GPU Support downloads the matching versions (about 200 MB) into",
    "this add-on's own folder. Without it the bake runs on the CPU (NumPy), same results.",
)


class CupyNoisePreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    gpu_wheels: bpy.props.StringProperty(
        name="Wheels Folder", subtype="DIR_PATH", default="",
        description="Install GPU support from this folder of wheels instead of PyPI "
                    "(offline machines, render farms)")

    def draw(self, context):
        from .panels import device_line
        line, info = device_line()
        col = self.layout.column()
        if info is None:                  # the probe still runs in the background
            col.label(text=line)
        else:
            col.label(text=f"CuPy: {info['cupy'] or 'not installed'}",
                      icon="CHECKMARK" if info["cupy"] else "ERROR")
            col.label(text=f"GPU: {info['gpu'] or info['error']}")
        col.label(text=f"Python: {sys.executable}")
        box = col.box()
        for line in GPU_HELP:
            box.label(text=line)
        col.operator("cupy_noise.refresh_device", icon="FILE_REFRESH")
        draw_gpu_support(self, col.box())


def draw_gpu_support(prefs, layout):
    """Install / Remove GPU Support: what is installed, the running install's progress
    and the last result."""
    from . import gpu_support as G
    from . import operators
    layout.label(text="GPU Support", icon="PREFERENCES")
    try:
        folder = G.folder_for(__package__)
    except Exception as exc:  # no user folder (should not happen)
        layout.label(text=f"No folder for GPU support: {exc}", icon="ERROR")
        return
    manifest = G.read_manifest(folder)
    act = G.active()
    if manifest:
        layout.label(text=f"Installed: CuPy {manifest.get('cupy_version')} for CUDA "
                          f"{manifest.get('cuda_major')} ({manifest.get('installed', '')})",
                     icon="CHECKMARK")
        if act is not None and act.error:
            layout.label(text=act.error, icon="ERROR")
    else:
        layout.label(text="Not installed", icon="INFO")
    layout.label(text=f"Folder: {folder}")
    job = operators.JOB
    running = job is not None and job.thread.is_alive()
    if running:
        layout.progress(factor=job.progress, type="BAR",
                        text=f"Installing {100 * job.progress:.0f}%")
        layout.label(text=job.line[:120])
        layout.label(text="Esc cancels")
    elif job is not None and job.summary:
        layout.label(text=job.summary[:160], icon="CHECKMARK" if job.ok else "ERROR")
    row = layout.row()
    row.enabled = not running
    row.operator("cupy_noise.install_gpu_support",
                 text="Reinstall GPU Support" if manifest else "Install GPU Support",
                 icon="IMPORT")
    sub = row.row()
    sub.enabled = bool(manifest) or (act is not None)
    sub.operator("cupy_noise.remove_gpu_support", icon="TRASH")
    layout.prop(prefs, "gpu_wheels")


classes = (CupyNoisePreferences,)


register, unregister = bpy.utils.register_classes_factory(classes)
