"""The settings of one bake, for every source, without Blender: ``BakeSettings`` is
built from the scene's properties (``properties.CupyNoiseSettings.to_settings``) or
from headless.py's flags (``headless.settings_from_flags``), and checked here, once
(``check``), before the bake reads anything from the scene.

Sources: "vectors" (render the Vector pass), "exr" (an EXR sequence rendered with it),
"surface" (noise in the meshes' UV textures), "geometry" (screen noise moved by the
meshes' exact motion), "volume" (3-D noise in a domain box moved by objects, a fluid
cache or velocity files). Fields that a source does not use are ignored by it.
"""
import dataclasses

from cupy_core.device import DEVICES
from cupy_core.targets import TARGETS, TEMPORAL_MODES, get_profile
from cupy_core.targets.profiles import check_channels, check_latent_factor
from cupy_core.vector_pass import BACKGROUND_RULES

from .errors import BakeError

SOURCES = ("vectors", "exr", "surface", "geometry", "volume")
METHODS = ("grid", "particle")
VOLUME_MOTIONS = ("objects", "fluid", "velocity")
FOLLOW_RULES = ("all", "inside")
VELOCITY_UNITS = ("frame", "second")
FLUID_FORMATS = ("auto", "mantaflow", "world")
CHANNELS = 4                # the default without a target (SD-style latents)
LATENT_FACTOR = 8           # the screen sources' default (SD-style latents)
VOLUME_LATENT_FACTOR = 1    # the volume source's default

# How the check's messages name the settings: the panel's words by default; headless.py
# passes its flags (HEADLESS_WORDS there).
UI_WORDS = {
    "volume": "the volume source",
    "domain": "a domain: choose a box object as the Domain",
    "objects motion": "object motion",
    "motion_objects": "at least one object to follow (Motion Object)",
    "velocity motion": "velocity motion",
    "velocity_path": "a Velocity Folder",
    "resolution": "resolution",
    "channels": "channels",
    "texture_size": "texture size",
    "latent_factor": "latent factor",
    "frames": "frame range",
    "target": "Target Model",
}


@dataclasses.dataclass
class BakeSettings:
    out_dir: str                      # the output folder (// = relative to the .blend)
    source: str = "vectors"           # SOURCES
    exr_path: str = ""                # exr: a folder, or a path with # for the frame
    method: str = "grid"              # METHODS
    seed: int = 0
    channels: int = None              # None: the target's, else CHANNELS
    latent_factor: int = None         # None: the target's, else LATENT_FACTOR
                                      # (VOLUME_LATENT_FACTOR for volumes)
    target: str = "none"              # cupy_core.targets.TARGETS: a video model's files too
    temporal: str = "nearest"         # cupy_core.targets.TEMPORAL_MODES
    degradation: float = 0.0          # fresh noise mixed into the target's latents, 0..1
    device: str = "auto"              # cupy_core.device.DEVICES
    exr: bool = False                 # also noise_XXXX.exr (screen sources)
    preview: bool = True              # also preview_XXXX.png, loaded as an image sequence
    frame_start: int = None           # None: the scene's
    frame_end: int = None
    background: str = "camera"        # cupy_core.vector_pass.BACKGROUND_RULES
    resume: bool = True
    texture_size: int = 512           # surface: the noise texture is N x N per object
    # volume source (object names, not objects)
    domain: str = ""                  # the domain box object
    volume_motion: str = "objects"    # VOLUME_MOTIONS
    motion_objects: tuple = ()        # objects motion: the objects that move the noise
    follow: str = "all"               # FOLLOW_RULES
    velocity_path: str = ""           # velocity: folder of velocity_XXXX.npy/.vdb or a # path
    fluid_cache: str = ""             # fluid: a cache folder instead of the modifier's
    velocity_units: str = "frame"     # VELOCITY_UNITS (with the scene's frame rate)
    fluid_format: str = "auto"        # FLUID_FORMATS
    resolution: int = 32              # voxels along the domain's longest side
    vdb: bool = True                  # also noise_XXXX.vdb (where openvdb exists), loaded
    probe_cells: int = 48             # lattice / armature probe: cells along its longest side
    substeps: int = 2                 # RK2 steps per frame through velocity fields

    def for_scene(self, scene, words=None):
        """A checked copy with the frame range (the scene's where not given) and the
        latent factor (the source's default where not given) filled in."""
        latent, channels = self.latent_factor, self.channels
        if self.target != "none" and self.target in TARGETS and self.source != "volume":
            # A target sets both; a given value that contradicts it is an error.
            try:
                profile = get_profile(self.target)
                channels = check_channels(profile, channels)
                latent = check_latent_factor(profile, latent)
            except ValueError as exc:
                raise BakeError(str(exc)) from None
        if latent is None:
            latent = VOLUME_LATENT_FACTOR if self.source == "volume" else LATENT_FACTOR
        s = dataclasses.replace(
            self, latent_factor=latent, channels=CHANNELS if channels is None else channels,
            frame_start=scene.frame_start if self.frame_start is None else self.frame_start,
            frame_end=scene.frame_end if self.frame_end is None else self.frame_end,
            motion_objects=tuple(n for n in self.motion_objects if n))
        s.check(words)
        return s

    def check(self, words=None):
        """``BakeError`` naming the first setting that cannot work (``words``: how the
        messages name them, ``UI_WORDS`` by default)."""
        w = dict(UI_WORDS, **(words or {}))
        for name, value, allowed in (
                ("source", self.source, SOURCES), ("method", self.method, METHODS),
                ("device", self.device, DEVICES),
                ("background", self.background, BACKGROUND_RULES),
                ("target", self.target, TARGETS), ("temporal", self.temporal, TEMPORAL_MODES)):
            if value not in allowed:
                raise BakeError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        numbers = ["channels", "latent_factor"]
        numbers += {"surface": ["texture_size"], "volume": ["resolution"]}.get(self.source, [])
        for name in numbers:
            if getattr(self, name) is not None and int(getattr(self, name)) < 1:
                raise BakeError(f"{w[name]} must be >= 1, got {getattr(self, name)}")
        if (self.frame_start is not None and self.frame_end is not None
                and self.frame_end < self.frame_start):
            raise BakeError(f"{w['frames']} {self.frame_start}-{self.frame_end} is empty")
        if not str(self.out_dir).strip():
            raise BakeError("no output folder given")
        if not 0.0 <= float(self.degradation) <= 1.0:
            raise BakeError(f"degradation must be in [0, 1], got {self.degradation}")
        if self.target != "none" and self.source == "volume":
            raise BakeError(f"{w['target']} is for screen noise: the volume source has "
                            "no video-model target (set it to None)")
        if self.target == "none" and float(self.degradation):
            raise BakeError("degradation applies to a target model's latents: choose a "
                            f"{w['target']} or set degradation to 0")
        if self.source == "volume":
            self.check_volume(w)

    def check_volume(self, w):
        for name, value, allowed in (
                ("volume motion", self.volume_motion, VOLUME_MOTIONS),
                ("follow", self.follow, FOLLOW_RULES),
                ("velocity units", self.velocity_units, VELOCITY_UNITS),
                ("fluid cache format", self.fluid_format, FLUID_FORMATS)):
            if value not in allowed:
                choices = ", ".join(allowed[:-1]) + " or " + allowed[-1]
                raise BakeError(f"{name} must be {choices}, got {value!r}")
        if not self.domain:
            raise BakeError(f"{w['volume']} needs {w['domain']}")
        if self.volume_motion == "objects" and not any(self.motion_objects):
            raise BakeError(f"{w['objects motion']} needs {w['motion_objects']}")
        if self.volume_motion == "velocity" and not self.velocity_path:
            raise BakeError(f"{w['velocity motion']} needs {w['velocity_path']}")

    def target_choice(self):
        """What the core's bake loops take as ``target=``: None, or the target, its
        temporal mode and degradation."""
        if self.target == "none":
            return None
        return {"target": self.target, "temporal": self.temporal,
                "degradation": float(self.degradation)}
