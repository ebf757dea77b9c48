"""The bake frame loop (cupy_core.bake.loop) called in-process: interruption, resume,
iterators, frame offsets, corners."""
import json

import numpy as np
import pytest

import cupy_core
from cupy_core.conventions import centers_to_corners
from cupy_core.bake.loop import BakeMismatchError, bake_flow_sequence, flow_positions

H, W, C = 12, 10, 3


def positions(t_count=4):
    """Backward positions at centres: a slow drift that changes every frame."""
    y, x = np.mgrid[0:H, 0:W] + 0.5
    return np.stack([np.stack([x + 0.3 + 0.1 * t, y - 0.2 + 0.02 * x], axis=-1)
                     for t in range(t_count)])


def files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()
            if p.name.startswith(("noise_", "preview_", "latents"))}


class Interrupting:
    """A sequence of positions that raises KeyboardInterrupt when item ``stop`` is asked."""

    def __init__(self, pos, stop):
        self.pos, self.stop = pos, stop

    def __len__(self):
        return len(self.pos)

    def __getitem__(self, t):
        if t == self.stop:
            raise KeyboardInterrupt
        return self.pos[t]


def test_interrupted_bake_leaves_whole_files_and_resumes(tmp_path):
    pos = positions()
    full = bake_flow_sequence(pos, tmp_path / "full", seed=4, channels=C, progress=False,
                              preview=True)
    assert full.frames == [0, 1, 2, 3, 4] and full.resumed_frames == 0
    out = tmp_path / "part"
    with pytest.raises(KeyboardInterrupt):
        bake_flow_sequence(Interrupting(pos, 2), out, seed=4, channels=C, progress=False,
                           preview=True)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["bake.json", "noise_0000.npy", "noise_0001.npy", "noise_0002.npy",
                     "preview_0000.png", "preview_0001.png", "preview_0002.png"]
    assert json.loads((out / "bake.json").read_text())["status"] == "in progress"
    res = bake_flow_sequence(pos, out, seed=4, channels=C, progress=False, preview=True)
    assert res.resumed_frames == 3 and res.frames == full.frames
    assert files(out) == files(tmp_path / "full")
    assert res.record["status"] == "complete"


def test_resume_adds_missing_previews(tmp_path):
    pos = positions(2)
    bake_flow_sequence(pos, tmp_path, progress=False)
    assert not list(tmp_path.glob("preview_*"))
    bake_flow_sequence(pos, tmp_path, progress=False, preview=True)
    assert sorted(p.name for p in tmp_path.glob("preview_*")) == [
        "preview_0000.png", "preview_0001.png", "preview_0002.png"]


def test_iterator_input_and_first_frame(tmp_path):
    pos = positions()
    a = bake_flow_sequence(pos, tmp_path / "a", seed=2, channels=C, first_frame=-2,
                           progress=False)
    assert a.frames == [-2, -1, 0, 1, 2]
    assert (tmp_path / "a" / "noise_-002.npy").exists()
    first = np.load(tmp_path / "a" / "noise_-002.npy")
    assert np.array_equal(first, cupy_core.white_noise((H, W), C, seed=2, frame=-2))
    b = bake_flow_sequence(iter(list(pos)), tmp_path / "b", seed=2, channels=C,
                           first_frame=-2, progress=False)
    assert b.frames == a.frames
    assert files(tmp_path / "a") == files(tmp_path / "b")
    rec = json.loads((tmp_path / "b" / "bake.json").read_text())
    assert rec["frames"] == {"first": -2, "last": 2, "count": 5}


def test_corners_give_the_same_as_the_core(tmp_path):
    corners = np.stack([centers_to_corners(p) for p in positions(2)])
    res = bake_flow_sequence(corners, tmp_path, at="corners", seed=1, channels=C,
                             progress=False)
    assert res.noise_shape == (H, W, C)
    f0 = np.load(tmp_path / "noise_0000.npy")
    f1 = cupy_core.warp(f0, corners[0], seed=1, frame=1, at="corners")
    assert np.array_equal(np.load(tmp_path / "noise_0001.npy"), f1)


def test_flow_positions_are_centres_plus_flow():
    flows = np.random.default_rng(0).standard_normal((2, 3, 4, 2)).astype(np.float32)
    seq = flow_positions(flows)
    assert len(seq) == 2
    p = seq[1]
    assert p.shape == (3, 4, 2)
    assert p[2, 1, 0] == pytest.approx(1.5 + flows[1, 2, 1, 0])
    assert p[2, 1, 1] == pytest.approx(2.5 + flows[1, 2, 1, 1])
    q = flow_positions(-flows, forward=True)[1]
    assert np.array_equal(p, q)


def test_mismatch_names_the_parameter(tmp_path):
    bake_flow_sequence(positions(1), tmp_path, method="grid", progress=False)
    with pytest.raises(BakeMismatchError, match="method"):
        bake_flow_sequence(positions(1), tmp_path, method="particle", progress=False)


@pytest.mark.parametrize("kwargs, word", [
    ({"channels": 0}, "channels"), ({"latent_factor": 0}, "latent factor"),
    ({"seed": 1.5}, "seed"), ({"at": "middle"}, "at"),
    ({"latent_factor": 64}, "larger than the frame"),
])
def test_bad_arguments_write_nothing(tmp_path, kwargs, word):
    with pytest.raises(ValueError, match=word):
        bake_flow_sequence(positions(1), tmp_path / "o", progress=False, **kwargs)
    assert not (tmp_path / "o").exists()


def test_bad_positions_shape(tmp_path):
    with pytest.raises(ValueError, match="positions"):
        bake_flow_sequence(np.zeros((2, H, W, 3)), tmp_path / "o", progress=False)
    with pytest.raises(ValueError, match="shape"):
        bake_flow_sequence([], tmp_path / "o", progress=False)


def test_resume_refuses_a_non_finite_last_frame(tmp_path):
    # The chain continues from the last frame on disk without re-checking every frame.
    pos = positions()
    out = tmp_path / "nan"
    with pytest.raises(KeyboardInterrupt):
        bake_flow_sequence(Interrupting(pos, 2), out, seed=4, channels=C, progress=False)
    last = np.load(out / "noise_0002.npy")
    last[3, 4, 1] = np.nan
    np.save(out / "noise_0002.npy", last)
    from cupy_core.bake.files import OutputError
    with pytest.raises(OutputError, match="non-finite"):
        bake_flow_sequence(pos, out, seed=4, channels=C, progress=False)


def test_more_cells_than_the_counters_address_is_refused():
    from cupy_core.conventions import check_positions, check_prior
    with pytest.raises(ValueError, match="frames of 65536x65536 pixels .* lower the resolution"):
        cupy_core.white_noise((2 ** 16, 2 ** 16), 1)          # the same words, called directly
    with pytest.raises(ValueError, match="volume of 1626x1626x1626 voxels .* domain resolution"):
        cupy_core.white_noise((1626, 1626, 1626), 1)
    huge = np.broadcast_to(np.zeros((1, 1, 1), np.float32), (2 ** 16, 2 ** 16, 1))
    # In the user's terms: the frame size, the most there may be, what to lower.
    with pytest.raises(ValueError, match="frames of 65536x65536 pixels .* at most "
                                         "4,294,967,295 .* lower the resolution"):
        check_prior(huge)
    corners = np.broadcast_to(np.zeros((1, 1, 2)), (2 ** 16 + 1, 2 ** 16 + 1, 2))
    with pytest.raises(ValueError, match="65536x65536 pixels"):
        check_positions(corners, 2, "corners")
    assert check_positions(corners[:3, :5], 2, "corners") == (2, 4)
