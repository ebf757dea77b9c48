"""Blender scene -> ``cupy_core.surface`` meshes and cameras (BLENDER_FACTS 7), for the
"surface" and "geometry" sources, read at the scene's current frame. The only Blender-specific part: evaluated meshes
(modifiers, shape keys, armatures) in world space with their per-corner UVs, and the
camera's ``calc_matrix_camera(...) @ matrix_world.inverted()``; projection,
rasterising and the y-up -> y-down change of convention are in cupy_core.surface.

Meshes: every mesh object visible in the render (``hide_render`` off, in a collection
that renders), sorted by name; object k's triangles use texture tile k (its own
noise; see cupy_core/surface/uvmap.py). UVs: the mesh's render UV map
(``active_render``), as the Cycles UV pass (BLENDER_FACTS 2); a mesh without UVs is
drawn (it hides what is behind it) but has no texture area: its pixels get the
off-surface rule.
"""
import numpy as np


def render_objects(scene, depsgraph):
    """The mesh objects the render shows, sorted by name."""
    obs = []
    for inst in depsgraph.object_instances:
        ob = inst.object
        if ob.type == "MESH" and not inst.is_instance and not ob.original.hide_render:
            obs.append(ob.original)
    return sorted({ob.name: ob for ob in obs}.values(), key=lambda o: o.name)


def _mesh_arrays(ob_e):
    """``(world vertices (V, 3), faces (T, 3), uv (T, 3, 2) or None)`` of an evaluated
    object."""
    me = ob_e.to_mesh()
    try:
        me.calc_loop_triangles()
        nv, nt = len(me.vertices), len(me.loop_triangles)
        co = np.empty(nv * 3, np.float32)
        me.vertices.foreach_get("co", co)
        tv = np.empty(nt * 3, np.int32)
        me.loop_triangles.foreach_get("vertices", tv)
        tl = np.empty(nt * 3, np.int32)
        me.loop_triangles.foreach_get("loops", tl)
        layer = next((l for l in me.uv_layers if l.active_render), None)
        uv = None
        if layer is not None:
            buf = np.empty(len(me.loops) * 2, np.float32)
            layer.data.foreach_get("uv", buf)
            uv = buf.reshape(-1, 2).astype(np.float64)[tl.reshape(-1, 3)]
        m = np.array(ob_e.matrix_world, dtype=np.float64)
    finally:
        ob_e.to_mesh_clear()
    co = co.reshape(-1, 3).astype(np.float64)
    world = co @ m[:3, :3].T + m[:3, 3]
    return world, tv.reshape(-1, 3).astype(np.int64), uv


def scene_mesh(scene, objects=None):
    """The scene's render meshes at its current frame as one ``cupy_core.surface.Mesh``
    (tiles per object), and the object names in tile order."""
    import bpy
    from cupy_core.surface import Mesh

    dg = bpy.context.evaluated_depsgraph_get()
    objects = render_objects(scene, dg) if objects is None else objects
    verts, faces, uvs, tiles = [], [], [], []
    offset = 0
    for k, ob in enumerate(objects):
        v, f, uv = _mesh_arrays(ob.evaluated_get(dg))
        verts.append(v)
        faces.append(f + offset)
        uvs.append(np.full((len(f), 3, 2), np.nan) if uv is None else uv)
        tiles.append(np.full(len(f), k))
        offset += len(v)
    if not verts:
        return Mesh(np.zeros((0, 3)), np.zeros((0, 3), int), np.zeros((0, 3, 2)),
                    np.zeros(0, int)), []
    return (Mesh(np.concatenate(verts), np.concatenate(faces), np.concatenate(uvs),
                 np.concatenate(tiles)), [ob.name for ob in objects])


def scene_camera(scene, width, height):
    """The scene camera at the current frame as a ``cupy_core.surface.Camera``."""
    from cupy_core.surface import Camera

    from .vectors import camera_matrices
    return Camera(camera_matrices(scene, scene.camera, width, height), width, height)


def motion_signature(scene, depsgraph):
    """A fingerprint of what moves at the scene's current frame: every rendered object's
    world matrix, the camera's lens, and each evaluated mesh's vertex positions (so an
    edited animation, modifier or shape key is seen). Read only."""
    import numpy as np

    from cupy_core.bake.fingerprint import Hasher

    h = Hasher()
    cam = scene.camera
    if cam is not None:
        cam_e = cam.evaluated_get(depsgraph)
        h.update_json([cam.name, getattr(cam_e.data, "lens", None),
                       getattr(cam_e.data, "ortho_scale", None), getattr(cam_e.data, "type", None)])
    for ob in sorted(scene.objects, key=lambda o: o.name):
        if ob.hide_render and ob != cam:    # (visible_get is False in background mode)
            continue
        ob_e = ob.evaluated_get(depsgraph)
        h.update_json([ob.name, ob.type])
        h.update_array(np.array(ob_e.matrix_world, np.float64))
        if ob.type == "MESH":
            mesh = ob_e.data
            co = np.empty(len(mesh.vertices) * 3, np.float32)
            mesh.vertices.foreach_get("co", co)
            h.update_array(co)
    return h.hexdigest()
