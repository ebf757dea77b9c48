"""Animated Blender scenes for the add-on's demo and tests, built by script so they
can be rebuilt with any Blender 4.2+ (bpy from PyPI included):

    python sample_scenes/blender_scenes.py demo OUT.blend      (or: blender -b -P ... -- demo OUT.blend)

* ``demo``: objects moving in front of a backdrop, a perspective camera panning
  (rotating) across them, world background visible at the top; 256 x 144, frames 1-24.
* ``flag``: a waving flag (a subdivided grid with UVs, deformed by a Wave modifier)
  under a perspective camera that slides and turns; 64 x 48, frames 1-8 (the surface
  and geometry sources; ``sample_scenes/flag_sequence.py`` is its Blender-free twin).
* ``shift``: a static orthographic camera, 10 pixels per unit, 64 x 48, a 16 x 16 px
  square moving exactly (dx, dy) pixels per frame (x right, y up) over a backdrop that
  covers the left part of the view; the rest is world background (no geometry).
* ``twist``: a smoke domain box inside a lattice that twists and drifts, frames 1-12
  (the volume source with a deformer).
"""
import math
import sys

import bpy


def _empty_scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.render.resolution_percentage = 100
    return scene


def _linear_keys(obj, path, values, frames):
    prefs = bpy.context.preferences.edit
    old = prefs.keyframe_new_interpolation_type
    prefs.keyframe_new_interpolation_type = "LINEAR"
    try:
        for frame, value in zip(frames, values):
            setattr(obj, path, value)
            obj.keyframe_insert(data_path=path, frame=frame)
    finally:
        prefs.keyframe_new_interpolation_type = old


def _material(name, rgb):
    m = bpy.data.materials.new(name)
    m.diffuse_color = (*rgb, 1.0)
    return m


def _box(name, size, location, rgb):
    bpy.ops.mesh.primitive_cube_add(size=1.0, location=location)
    ob = bpy.context.active_object
    ob.name = name
    ob.scale = size
    ob.data.materials.append(_material(name, rgb))
    return ob


def _plane(name, size, location, rgb):
    bpy.ops.mesh.primitive_plane_add(size=1.0, location=location)
    ob = bpy.context.active_object
    ob.name = name
    ob.scale = (size[0], size[1], 1.0)
    ob.data.materials.append(_material(name, rgb))
    return ob


def shift_scene(dx=3, dy=2, frames=5):
    """See the module doc. Frame f (1-based) has the square's centre at pixel
    ``(17 + dx (f - 1), 34 - dy (f - 1))`` (x right, y down from the top-left)."""
    scene = _empty_scene()
    scene.render.resolution_x, scene.render.resolution_y = 64, 48
    scene.frame_start, scene.frame_end = 1, frames
    cam_data = bpy.data.cameras.new("Camera")
    cam_data.type = "ORTHO"
    cam_data.ortho_scale = 6.4           # 64 px across: 10 px per unit
    cam = bpy.data.objects.new("Camera", cam_data)
    cam.location = (0.0, 0.0, 10.0)
    scene.collection.objects.link(cam)
    scene.camera = cam
    # backdrop over x in [-3.2, -0.2] (pixel columns 0..30), whole height
    _plane("Backdrop", (3.0, 6.0), (-1.7, 0.0, -1.0), (0.2, 0.3, 0.8))
    sq = _box("Square", (1.6, 1.6, 0.2), (-1.5, -1.0, 0.0), (0.9, 0.4, 0.1))
    _linear_keys(sq, "location",
                 [(-1.5 + 0.1 * dx * t, -1.0 + 0.1 * dy * t, 0.0) for t in range(frames)],
                 range(1, frames + 1))
    scene.frame_set(1)
    return scene


def demo_scene(frames=24):
    scene = _empty_scene()
    scene.render.resolution_x, scene.render.resolution_y = 256, 144
    scene.frame_start, scene.frame_end = 1, frames
    cam_data = bpy.data.cameras.new("Camera")
    cam_data.lens = 35
    cam = bpy.data.objects.new("Camera", cam_data)
    cam.location = (0.0, -12.0, 2.0)
    scene.collection.objects.link(cam)
    scene.camera = cam
    _linear_keys(cam, "rotation_euler",
                 [(math.radians(85), 0.0, math.radians(a)) for a in (12.0, -12.0)],
                 (1, frames))
    _plane("Backdrop", (30.0, 8.0), (0.0, 6.0, 3.0), (0.3, 0.4, 0.7)).rotation_euler = (
        math.radians(90), 0.0, 0.0)
    _plane("Floor", (30.0, 14.0), (0.0, 0.0, 0.0), (0.5, 0.5, 0.45))
    a = _box("CubeA", (1.5, 1.5, 1.5), (-5.0, 0.0, 0.75), (0.9, 0.3, 0.1))
    _linear_keys(a, "location", [(-5.0, 0.0, 0.75), (4.0, -1.0, 0.75)], (1, frames))
    b = _box("CubeB", (1.0, 1.0, 2.5), (4.0, 2.0, 1.25), (0.1, 0.8, 0.3))
    _linear_keys(b, "location", [(4.0, 2.0, 1.25), (-3.0, 2.0, 1.25)], (1, frames))
    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.8, location=(0.0, -3.0, 0.8))
    s = bpy.context.active_object
    s.name = "Ball"
    _linear_keys(s, "location", [(0.0, -3.0, 0.8), (0.0, -3.0, 3.2), (0.0, -3.0, 0.8)],
                 (1, frames // 2, frames))
    light = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    scene.collection.objects.link(light)
    scene.frame_set(1)
    return scene


def flag_scene(frames=8, width=64, height=48):
    """See the module doc: the flag spans x in [-1, 1], z in [0, 1.2] (upright, facing
    -y), waving in y; UVs u along x, v up."""
    scene = _empty_scene()
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.frame_start, scene.frame_end = 1, frames
    bpy.ops.mesh.primitive_grid_add(x_subdivisions=24, y_subdivisions=12, size=1.0,
                                    calc_uvs=True)
    ob = bpy.context.active_object
    ob.name = "Flag"
    ob.scale = (2.0, 1.2, 1.0)
    ob.rotation_euler = (math.radians(90), 0.0, 0.0)
    ob.location = (0.0, 0.0, 0.6)
    ob.data.materials.append(_material("Flag", (0.8, 0.2, 0.2)))
    wave = ob.modifiers.new("Wave", "WAVE")
    wave.use_normal = False
    wave.height = 1.0
    wave.width = 0.4
    wave.speed = 0.08
    wave.narrowness = 1.0
    wave.start_position_x = -0.5
    wave.time_offset = -40.0         # the wave already covers the flag at frame 1
    wave.use_y = False
    cam_data = bpy.data.cameras.new("Camera")
    cam_data.lens = 30
    cam = bpy.data.objects.new("Camera", cam_data)
    scene.collection.objects.link(cam)
    scene.camera = cam
    _linear_keys(cam, "location", [(-0.3, -3.2, 0.9), (0.3, -3.0, 0.7)], (1, frames))
    _linear_keys(cam, "rotation_euler", [(math.radians(80), 0.0, math.radians(-4)),
                                         (math.radians(82), 0.0, math.radians(5))],
                 (1, frames))
    scene.frame_set(1)
    return scene


def twist_scene(frames=12, turns=0.25):
    """A 2 x 2 x 2 smoke domain ("Smoke Domain") inside a lattice ("Twister") whose
    shape key twists it about z (top against bottom by ``turns`` of a full turn) while
    the lattice drifts along x: the volume source's deformer sample."""
    scene = _empty_scene()
    scene.frame_start, scene.frame_end = 1, frames
    dom = _box("Smoke Domain", (2, 2, 2), (0, 0, 0), (0.6, 0.6, 0.7))
    dom.display_type = "WIRE"
    lt = bpy.data.lattices.new("Twister")
    lt.points_u = lt.points_v = 4
    lt.points_w = 6
    ob = bpy.data.objects.new("Twister", lt)
    scene.collection.objects.link(ob)
    ob.scale = (3, 3, 3)
    ob.shape_key_add(name="Basis")
    key = ob.shape_key_add(name="Twist")
    for p in key.data:
        a = 2 * math.pi * turns * p.co.z            # local z in -0.5 .. 0.5
        x, y = p.co.x, p.co.y
        p.co.x, p.co.y = math.cos(a) * x - math.sin(a) * y, math.sin(a) * x + math.cos(a) * y
    _linear_keys(key, "value", [0.0, 1.0], [1, frames])
    _linear_keys(ob, "location", [(0, 0, 0), (0.5, 0, 0)], [1, frames])
    return scene


SCENES = {"demo": demo_scene, "shift": shift_scene, "flag": flag_scene,
          "twist": twist_scene}


def save(kind, path):
    SCENES[kind]()
    bpy.ops.wm.save_as_mainfile(filepath=path)
    return path


if __name__ == "__main__":
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    if len(argv) != 2 or argv[0] not in SCENES:
        sys.exit(f"usage: blender_scenes.py {{{'|'.join(SCENES)}}} OUT.blend")
    save(argv[0], argv[1])
    print(f"saved the {argv[0]} scene to {argv[1]}")
