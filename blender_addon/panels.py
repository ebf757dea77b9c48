"""The panel in Output properties."""
import bpy


def memory_line(scene, s):
    """The bake's estimated peak memory against the memory free now, in words (the
    bake itself refuses, before the first frame, what would not fit)."""
    from cupy_core.bake.memory import available_memory, estimate_bake_memory, format_size
    from cupy_core.targets import get_profile

    from .readers.vectors import render_size
    try:
        channels = s.channels
        if s.source != "volume" and s.target != "none":
            channels = get_profile(s.target).channels
        if s.source == "volume":
            n = int(s.volume_resolution)
            est = estimate_bake_memory((n, n, n), channels, source="volume", method=s.method)
        else:
            est = estimate_bake_memory(render_size(scene), channels, method=s.method,
                                       source="surface" if s.source == "surface" else "flow",
                                       texture_size=int(s.texture_size))
        free = available_memory()
    except (ValueError, OSError) as exc:
        return f"Memory: no estimate ({exc})"
    return (f"Memory: about {format_size(est.peak)}"
            + (f" of {format_size(free)} free" if free else ""))


def device_line():
    """The device line of the panel and the preferences: the GPU found, or why the CPU
    runs. The probe behind it takes a second or more the first time (CuPy's import, a
    kernel compiled), so it runs in the background: "checking" until then, and a redraw
    once it is done."""
    from .gpu_support import device_info
    info = device_info(wait=False)
    if info is None:
        if not bpy.app.timers.is_registered(redraw_when_probed):
            bpy.app.timers.register(redraw_when_probed, first_interval=0.25)
        return "GPU: checking...", info
    return (f"GPU: {info['gpu']} (CuPy {info['cupy']})" if info["gpu"]
            else f"CPU only: {info['error']}"), info


def redraw_when_probed():
    from .gpu_support import probing
    if probing():
        return 0.25                       # look again in a quarter of a second
    wm = getattr(bpy.context, "window_manager", None)
    for window in (wm.windows if wm is not None else ()):
        for area in window.screen.areas:
            if area.type in ("PROPERTIES", "PREFERENCES"):
                area.tag_redraw()
    return None


class CUPYNOISE_PT_bake(bpy.types.Panel):
    bl_label = "Warped Noise"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "output"

    def draw(self, context):
        s = context.scene.cupy_noise
        layout = self.layout
        layout.use_property_split = True
        layout.prop(s, "source")
        if s.source == "exr":
            layout.prop(s, "exr_path")
        if s.source == "surface":
            layout.prop(s, "texture_size")
        volume = s.source == "volume"
        if volume:
            layout.prop(s, "volume_domain")
            layout.prop(s, "volume_motion")
            if s.volume_motion == "objects":
                layout.prop(s, "volume_object")
                layout.prop(s, "volume_follow")
                ob = s.volume_object
                if ob is not None and ob.type in {"LATTICE", "ARMATURE"}:
                    row = layout.row()
                    row.active = False
                    row.label(text=("The lattice deforms the noise" if ob.type == "LATTICE"
                                    else "Bone envelopes deform the noise"), icon="INFO")
            elif s.volume_motion == "velocity":
                layout.prop(s, "velocity_path")
                layout.prop(s, "velocity_units")
            else:
                layout.prop(s, "fluid_cache")
                layout.prop(s, "fluid_format")
                if s.fluid_format == "world":
                    layout.prop(s, "velocity_units")
            layout.prop(s, "volume_resolution")
        else:
            layout.prop(s, "background")
        layout.prop(s, "method")
        layout.prop(s, "seed")
        if not volume:
            layout.prop(s, "target")
        if not volume and s.target != "none":
            from cupy_core.targets import frame_rule, get_profile
            p = get_profile(s.target)
            scene = context.scene
            frames = scene.frame_end - scene.frame_start + 1
            col = layout.column(align=True)
            col.active = False
            col.label(text=frame_rule(p), icon="INFO")
            col.label(text=f"Frame range: {frames} frames; {p.channels} channels, "
                           f"latents / {p.spatial}")
            if p.temporal > 1:
                layout.prop(s, "temporal")
            layout.prop(s, "degradation")
        else:
            layout.prop(s, "channels")
            layout.prop(s, "volume_latent_factor" if volume else "latent_factor")
        row = layout.row()
        row.active = False
        row.label(text=memory_line(context.scene, s), icon="MEMORY")
        layout.prop(s, "out_dir")
        layout.prop(s, "device")
        row = layout.row()
        row.alignment = "RIGHT"
        row.label(text=device_line()[0])
        col = layout.column(heading="Formats")
        col.label(text="noise_XXXX.npy, latents.npy, bake.json")
        if volume:
            from .vdb import why_unavailable
            why = why_unavailable()
            col.prop(s, "write_vdb")
            if why:
                row = col.row()
                row.active = False
                row.label(text=why, icon="INFO")
        else:
            col.prop(s, "write_exr")
            col.prop(s, "write_preview")
        layout.operator("cupy_noise.bake", icon="RENDER_ANIMATION")


classes = (CUPYNOISE_PT_bake,)


register, _unregister = bpy.utils.register_classes_factory(classes)


def unregister():
    if bpy.app.timers.is_registered(redraw_when_probed):
        bpy.app.timers.unregister(redraw_when_probed)
    _unregister()
