"""Which files a mesh sequence is (``cupy_core.surface.meshio.sequence_files``): a ``#``
pattern reads like every other frame pattern of the package (``bake.sequences``)."""
import os

import pytest

from cupy_core.surface.meshio import sequence_files


def _touch(folder, *names):
    for n in names:
        (folder / n).write_bytes(b"")


def test_hash_pattern_finds_longer_frame_numbers_in_frame_order(tmp_path):
    # Blender writes frame 10000 of mesh_####.obj as mesh_10000.obj (more digits); a
    # glob of one digit per # missed it.
    _touch(tmp_path, "mesh_9998.obj", "mesh_9999.obj", "mesh_10000.obj", "mesh_10001.obj",
           "other_0001.obj", "mesh_12.obj")
    files = sequence_files(tmp_path / "mesh_####.obj")
    assert [os.path.basename(f) for f in files] == [
        "mesh_9998.obj", "mesh_9999.obj", "mesh_10000.obj", "mesh_10001.obj"]


def test_hash_pattern_refuses_two_files_for_one_frame(tmp_path):
    _touch(tmp_path, "mesh_07.obj", "mesh_007.obj")
    with pytest.raises(ValueError, match="both frame 7"):
        sequence_files(tmp_path / "mesh_##.obj")


def test_hash_pattern_with_no_files_names_the_pattern(tmp_path):
    with pytest.raises(ValueError, match="mesh_####.obj.*no mesh files"):
        sequence_files(tmp_path / "mesh_####.obj")
