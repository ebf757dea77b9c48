"""Scene settings of the noise bake (``scene.cupy_noise``): the panel's properties,
turned into the bake's ``settings.BakeSettings`` by ``to_settings``."""
import bpy
from bpy.props import (BoolProperty, EnumProperty, FloatProperty, IntProperty,
                       PointerProperty, StringProperty)
from cupy_core.targets import PROFILES

from .settings import CHANNELS, LATENT_FACTOR, VOLUME_LATENT_FACTOR, BakeSettings

DEFAULTS = BakeSettings(out_dir="//noise/")


def _target_items():
    """The Target Model menu: None, then every family of cupy_core's profile table."""
    return [(p.name, "None" if p.name == "none" else p.label,
             "noise_XXXX.npy and latents.npy only" if p.name == "none" else
             f"Also write the latents {p.label} takes as they are ({p.name})")
            for p in PROFILES.values()]


class CupyNoiseSettings(bpy.types.PropertyGroup):
    source: EnumProperty(
        name="Source", default=DEFAULTS.source,
        items=[("vectors", "Render Vectors", "Render the Vector and Depth passes with "
                "Cycles (1 sample) for every frame, into a temporary file"),
               ("exr", "EXR Sequence", "Read a multilayer EXR sequence already rendered "
                "with the Vector pass (and Depth, for disocclusion)"),
               ("surface", "Surface (UV)", "Noise that lives in each mesh's UV texture "
                "space and sticks to the surface as it moves and deforms (no render)"),
               ("geometry", "Mesh Motion", "Screen noise warped by the exact motion of "
                "the evaluated meshes and the camera at pixel corners (no render)"),
               ("volume", "Volume", "3-D noise on a voxel grid in a domain box, moved by "
                "an object, a baked fluid cache or velocity files (.npy, and .vdb where "
                "Blender bundles OpenVDB)")])
    volume_domain: PointerProperty(
        name="Domain", type=bpy.types.Object,
        description="Volume source: the box object whose bounding box is the voxel grid")
    volume_motion: EnumProperty(
        name="Motion", default=DEFAULTS.volume_motion,
        items=[("objects", "Object", "The motion object's evaluated transform moves the "
                "noise"),
               ("fluid", "Fluid Cache", "The velocity grid of the domain's baked fluid "
                "cache (OpenVDB)"),
               ("velocity", "Velocity Files", "A folder of velocity_XXXX.npy files "
                "(D, H, W, 3) on the domain's grid")])
    volume_object: PointerProperty(
        name="Motion Object", type=bpy.types.Object,
        description="Volume source, object motion: the object whose motion drives the "
                    "noise; a lattice or armature deforms it as it deforms a mesh")
    volume_follow: EnumProperty(
        name="Follow", default=DEFAULTS.follow,
        items=[("all", "Whole Domain", "The whole domain's noise follows the object"),
               ("inside", "Inside Object", "Voxels in the object's bounding box follow it, "
                "the rest stay still")])
    velocity_path: StringProperty(
        name="Velocity Folder", subtype="DIR_PATH", default="",
        description="Folder of velocity_XXXX.npy files, or a path with # for the frame "
                    "number")
    fluid_cache: StringProperty(
        name="Fluid Cache", subtype="DIR_PATH", default="",
        description="A fluid cache folder (with data/) instead of the domain's Fluid "
                    "modifier's cache; empty: the modifier's")
    fluid_format: EnumProperty(
        name="Cache Layout", default=DEFAULTS.fluid_format,
        items=[("auto", "Auto", "Blender's own fluid cache when the domain is a fluid "
                "domain or the file says so, else World"),
               ("mantaflow", "Blender Fluid", "Blender's Mantaflow cache: staggered "
                "velocity in cells per time step, placed by the domain object"),
               ("world", "World", "A VDB from another tool: the grid's transform places it, "
                "values in world units (Velocity Units)")])
    velocity_units: EnumProperty(
        name="Velocity Units", default=DEFAULTS.velocity_units,
        items=[("frame", "Per Frame", "World units per frame"),
               ("second", "Per Second", "World units per second (the scene's frame rate)")])
    volume_latent_factor: IntProperty(
        name="Latent Factor", default=VOLUME_LATENT_FACTOR, min=1, soft_max=16,
        description="Volume source: latents.npy pools the voxels by this factor")
    volume_resolution: IntProperty(name="Resolution", default=DEFAULTS.resolution, min=1,
                                   soft_max=256,
                                   description="Voxels along the domain's longest side")
    write_vdb: BoolProperty(name="OpenVDB", default=DEFAULTS.vdb,
                            description="Also write noise_XXXX.vdb and load it as a Volume "
                                        "object (Blender 4.5 and later)")
    texture_size: IntProperty(name="Texture Size", default=DEFAULTS.texture_size, min=1,
                              soft_max=4096,
                              description="Surface source: the noise texture of each "
                                          "mesh is N x N pixels")
    exr_path: StringProperty(name="EXR Sequence", subtype="FILE_PATH", default="",
                             description="Folder of .exr files, or a path with # for the "
                                         "frame number")
    method: EnumProperty(
        name="Method", default=DEFAULTS.method,
        items=[("grid", "Grid", "Exact overlaps of each warped pixel (best quality)"),
               ("particle", "Particle", "Bilinear splats of warped pixel centres")])
    seed: IntProperty(name="Seed", default=DEFAULTS.seed, min=0)
    target: EnumProperty(
        name="Target Model", default=DEFAULTS.target, items=_target_items(),
        description="A video model whose latents to write too (model_latents.npy for "
                    "diffusers, model_latents.latent for ComfyUI, noises.npy for "
                    "Go-with-the-Flow); it sets the channels and the latent factor")
    temporal: EnumProperty(
        name="Latent Frames", default=DEFAULTS.temporal,
        items=[("nearest", "Nearest", "Latent frame i is video frame s*i: exactly white, "
                "carried by the motion"),
               ("blend_norm", "Blend & Normalise", "Go-with-the-Flow's blend-and-"
                "normalise, for its LoRAs trained so (approximate)")])
    degradation: FloatProperty(
        name="Degradation", default=DEFAULTS.degradation, min=0.0, max=1.0,
        description="Fresh noise mixed into the target's latents: less motion "
                    "adherence, more detail (0: off)")
    channels: IntProperty(name="Channels", default=CHANNELS, min=1, soft_max=16,
                          description="Noise channels (4 for Stable Diffusion latents)")
    latent_factor: IntProperty(name="Latent Factor", default=LATENT_FACTOR, min=1,
                               soft_max=16,
                               description="latents.npy pools the noise by this factor")
    out_dir: StringProperty(name="Output Folder", subtype="DIR_PATH", default=DEFAULTS.out_dir)
    device: EnumProperty(
        name="Device", default=DEFAULTS.device,
        items=[("auto", "Auto", "The GPU when CuPy finds one, else the CPU"),
               ("cpu", "CPU", "NumPy on the CPU"),
               ("gpu", "GPU", "CuPy on a CUDA GPU")])
    background: EnumProperty(
        name="Background", default=DEFAULTS.background,
        items=[("camera", "At Infinity", "Pixels without geometry follow the camera's "
                "rotation, like distant scenery"),
               ("vectors", "As Rendered", "Use the Vector pass as is (0: the noise stays "
                "on the screen)"),
               ("fresh", "Fresh", "Fresh noise every frame")])
    write_exr: BoolProperty(name="EXR", default=DEFAULTS.exr,
                            description="Also write noise_XXXX.exr (all channels)")
    write_preview: BoolProperty(name="Preview PNG", default=DEFAULTS.preview,
                                description="Also write preview_XXXX.png and load them "
                                            "as an image sequence")

    def to_settings(self, **overrides):
        """The ``settings.BakeSettings`` of these properties (``overrides`` replace
        fields): the volume source takes its own latent factor."""
        volume = self.source == "volume"
        targeted = self.target != "none" and not volume   # the target sets both
        kw = dict(out_dir=self.out_dir, source=self.source, exr_path=self.exr_path,
                  method=self.method, seed=self.seed,
                  channels=None if targeted else self.channels,
                  latent_factor=(self.volume_latent_factor if volume else
                                 None if targeted else self.latent_factor),
                  target="none" if volume else self.target, temporal=self.temporal,
                  degradation=0.0 if volume or self.target == "none" else self.degradation,
                  device=self.device, exr=self.write_exr, preview=self.write_preview,
                  background=self.background, texture_size=self.texture_size,
                  domain=self.volume_domain.name if self.volume_domain else "",
                  volume_motion=self.volume_motion,
                  motion_objects=(self.volume_object.name,) if self.volume_object else (),
                  follow=self.volume_follow, velocity_path=self.velocity_path,
                  fluid_cache=self.fluid_cache, velocity_units=self.velocity_units,
                  fluid_format=self.fluid_format,
                  resolution=self.volume_resolution, vdb=self.write_vdb)
        kw.update(overrides)
        return BakeSettings(**kw)


classes = (CupyNoiseSettings,)


def register():
    for c in classes:
        bpy.utils.register_class(c)
    bpy.types.Scene.cupy_noise = PointerProperty(type=CupyNoiseSettings)


def unregister():
    del bpy.types.Scene.cupy_noise
    for c in reversed(classes):
        bpy.utils.unregister_class(c)
