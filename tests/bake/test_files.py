"""Outputs (docs/DESIGN.md 9): atomic writers, the hand-made PNG encoder, latents.npy."""
import io as _pyio
import json
import os
import stat
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

import cupy_core
from cupy_core.bake import files as cio
from cupy_core.bake.progress import Progress, progress


def leftovers(folder):
    """Files in ``folder`` that look like temporaries (hidden or .tmp)."""
    return sorted(p.name for p in folder.iterdir()
                  if p.name.startswith(".") or p.name.endswith(".tmp"))


# ----------------------------------------------------------------- names

@pytest.mark.parametrize("frame, name", [
    (0, "noise_0000.npy"), (7, "noise_0007.npy"), (1234, "noise_1234.npy"),
    (12345, "noise_12345.npy"), (-1, "noise_-001.npy"), (-1234, "noise_-1234.npy"),
    (np.int64(3), "noise_0003.npy"),
])
def test_frame_name_round_trips(frame, name):
    assert cio.frame_name("noise", frame, "npy") == name
    assert cio.frame_name("noise", frame, ".npy") == name
    assert cio.parse_frame_name("noise", name, "npy") == int(frame)


def test_frame_name_rejects_non_integers():
    for bad in (1.5, "3", True, None):
        with pytest.raises(ValueError, match="integer"):
            cio.frame_name("noise", bad, "npy")


def test_parse_frame_name_ignores_other_names():
    for name in ("noise_7.npy", "noise_0007.png", "preview_0007.npy", "noise_0007.npy.tmp",
                 ".noise_0007.npy.abcdefgh.tmp", "noise_00007.npy", "noise_-0001.npy"):
        assert cio.parse_frame_name("noise", name, "npy") is None


# ----------------------------------------------------------------- atomic writes

def test_save_npy_atomic_round_trip_and_no_temporaries(tmp_path):
    a = np.random.default_rng(0).standard_normal((5, 6, 3)).astype(np.float32)
    path = cio.save_npy_atomic(tmp_path / "noise_0000.npy", a)
    b = np.load(path)
    assert b.dtype == np.float32 and np.array_equal(a, b)
    cio.save_npy_atomic(tmp_path / "noise_0000.npy", a + 1)  # replaces
    assert np.array_equal(np.load(path), a + 1)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_failed_write_keeps_old_file_and_leaves_no_temporary(tmp_path, monkeypatch, exc):
    path = tmp_path / "noise_0000.npy"
    cio.save_npy_atomic(path, np.zeros((4, 4, 1), np.float32))
    before = path.read_bytes()

    def broken(f, arr, **kw):
        f.write(b"\x93NUMPY half a file")
        raise exc("stopped mid-write")

    monkeypatch.setattr(np.lib.format, "write_array", broken)
    with pytest.raises(exc):
        cio.save_npy_atomic(path, np.ones((4, 4, 1), np.float32))
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_object_arrays_are_refused(tmp_path):
    with pytest.raises(ValueError, match="object"):
        cio.save_npy_atomic(tmp_path / "x.npy", np.array([{}, None], dtype=object))
    assert list(tmp_path.iterdir()) == []


def test_write_json_atomic(tmp_path):
    obj = {"shape": [4, 5], "seed": np.int64(3), "x": np.float32(0.5), "s": "é"}
    path = cio.write_json_atomic(tmp_path / "bake.json", obj)
    assert json.loads(path.read_text(encoding="utf-8")) == {"shape": [4, 5], "seed": 3,
                                                            "x": 0.5, "s": "é"}
    with pytest.raises(ValueError):
        cio.write_json_atomic(tmp_path / "bad.json", {"x": float("nan")})
    assert not (tmp_path / "bad.json").exists()
    assert leftovers(tmp_path) == []


def test_remove_stale_temporaries(tmp_path):
    stale = [".noise_0003.npy.k2j4_x9a.tmp", ".latents.npy.abcdefgh.tmp",
             ".bake.json.12345678.tmp", ".preview_0001.png.zzzzzzzz.tmp"]
    kept = ["noise_0003.npy", ".hidden", "notes.tmp", ".mine.abcdefgh.tmp"]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"x")
    assert cio.remove_stale_temporaries(tmp_path) == len(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)


# ----------------------------------------------------------------- output folder

def test_check_output_dir_creates_folders(tmp_path):
    target = tmp_path / "a" / "b"
    assert cio.check_output_dir(target) == target
    assert target.is_dir() and list(target.iterdir()) == []


def test_check_output_dir_names_a_file_in_the_way(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(cio.OutputError, match="file.*not a folder"):
        cio.check_output_dir(blocker)
    with pytest.raises(cio.OutputError, match="cannot create output folder.*sub"):
        cio.check_output_dir(blocker / "sub")
    with pytest.raises(cio.OutputError, match="does not exist"):
        cio.check_output_dir(tmp_path / "missing", create=False)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root can write into read-only folders")
def test_check_output_dir_read_only(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(cio.OutputError, match="not writable"):
            cio.check_output_dir(folder)
    finally:
        folder.chmod(0o755)


# ----------------------------------------------------------------- PNG

def decode_png(data):
    """A minimal PNG decoder for what encode_png writes: checks the signature and every
    CRC, reads IHDR, inflates the IDATs and undoes the row filters (type 0 only)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body), f"bad CRC in {kind}"
        chunks.append((kind, body))
        pos += 12 + length
    assert pos == len(data)
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, depth, colour, comp, filt, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, comp, filt, interlace) == (8, 0, 0, 0)
    channels = {0: 1, 4: 2, 2: 3, 6: 4}[colour]
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    rows = np.frombuffer(raw, np.uint8).reshape(height, 1 + width * channels)
    assert (rows[:, 0] == 0).all()
    return rows[:, 1:].reshape(height, width, channels)


@pytest.mark.parametrize("shape", [(7, 5), (7, 5, 1), (3, 9, 2), (6, 4, 3), (2, 11, 4), (1, 1, 3)])
def test_png_pixels_decode_exactly(tmp_path, shape):
    img = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    path = cio.write_png_atomic(tmp_path / "x.png", img)
    decoded = decode_png(path.read_bytes())
    expect = img if img.ndim == 3 else img[:, :, None]
    assert decoded.shape == expect.shape and np.array_equal(decoded, expect)
    assert leftovers(tmp_path) == []


def test_png_rejects_bad_images(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        cio.encode_png(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        cio.encode_png(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(ValueError, match="shape"):
        cio.encode_png(np.zeros((4,), np.uint8))
    with pytest.raises(ValueError, match="empty"):
        cio.encode_png(np.zeros((0, 4, 3), np.uint8))
    with pytest.raises(ValueError):
        cio.write_png_atomic(tmp_path / "bad.png", np.zeros((4, 4, 3), np.int16))
    assert list(tmp_path.iterdir()) == []


def test_noise_to_preview_mapping():
    noise = np.zeros((2, 3, 4), np.float32)
    noise[0, 0, :3] = [0.0, 1.0, -1.0]
    noise[0, 1, :3] = [3.1, -3.1, np.nan]
    noise[0, 2, 3] = 9.0  # channel 3 is not shown
    img = cio.noise_to_preview(noise)
    assert img.dtype == np.uint8 and img.shape == (2, 3, 3)
    assert img[0, 0].tolist() == [128, 170, 86]       # 128 + 42.5 x, rounded
    assert img[0, 1].tolist() == [255, 0, 128]         # clipped; NaN is mid-grey
    assert img[0, 2].tolist() == [128, 128, 128]


def test_noise_to_preview_grey_for_fewer_than_three_channels():
    noise = np.random.default_rng(2).standard_normal((4, 5, 2)).astype(np.float32)
    img = cio.noise_to_preview(noise)
    assert img.shape == (4, 5, 3)
    assert (img[..., 0] == img[..., 1]).all() and (img[..., 0] == img[..., 2]).all()
    assert np.array_equal(img, cio.noise_to_preview(noise[..., :1]))
    assert np.array_equal(img, cio.noise_to_preview(noise[..., 0]))


# ----------------------------------------------------------------- latents and bake.json

@pytest.mark.parametrize("factor", [1, 2, 4])
def test_assemble_latents_is_the_downsampled_frames(tmp_path, factor):
    rng = np.random.default_rng(3)
    frames = [0, 1, 2, 3]
    noise = {f: rng.standard_normal((9, 10, 3)).astype(np.float32) for f in frames}
    for f in frames:
        cio.save_npy_atomic(tmp_path / cio.frame_name("noise", f, "npy"), noise[f])
    path = cio.assemble_latents(tmp_path, frames, factor)
    assert path == tmp_path / "latents.npy"
    lat = np.load(path)
    assert lat.dtype == np.float32
    assert lat.shape == (4, 9 // factor, 10 // factor, 3)
    for i, f in enumerate(frames):
        assert np.array_equal(lat[i], np.asarray(cupy_core.downsample(noise[f], factor)))
    assert leftovers(tmp_path) == []


def test_assemble_latents_missing_frame_leaves_nothing(tmp_path):
    cio.save_npy_atomic(tmp_path / "noise_0000.npy", np.zeros((4, 4, 2), np.float32))
    cio.save_npy_atomic(tmp_path / "latents.npy", np.zeros(1, np.float32))
    before = (tmp_path / "latents.npy").read_bytes()
    with pytest.raises(cio.OutputError, match="noise_0001.npy"):
        cio.assemble_latents(tmp_path, [0, 1], 1)
    assert (tmp_path / "latents.npy").read_bytes() == before  # the old one survives
    assert leftovers(tmp_path) == []


def test_assemble_latents_bad_factor(tmp_path):
    cio.save_npy_atomic(tmp_path / "noise_0000.npy", np.zeros((4, 4, 2), np.float32))
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="factor"):
            cio.assemble_latents(tmp_path, [0], bad)
    with pytest.raises(ValueError):
        cio.assemble_latents(tmp_path, [0], 8)  # larger than the frame
    assert not (tmp_path / "latents.npy").exists()


def test_bake_json_contents():
    rec = cio.bake_json({"method": "grid", "seed": 1}, status="complete", frames=[3, 4, 5],
                        extra={"noise_shape": [4, 4, 2]})
    assert rec["format"] == "cupy_core.bake" and rec["status"] == "complete"
    assert rec["method"] == "grid" and rec["seed"] == 1
    assert rec["frames"] == {"first": 3, "last": 5, "count": 3}
    assert rec["noise_shape"] == [4, 4, 2]
    assert rec["versions"]["cupy_core"] == cupy_core.__version__
    assert rec["versions"]["numpy"] == np.__version__
    assert "time" in rec
    json.dumps(rec, allow_nan=False)


# ----------------------------------------------------------------- progress bar

class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_progress_log_style_prints_every_ten_percent():
    out, clock = _pyio.StringIO(), FakeClock()
    with Progress(20, stream=out, tty=False, clock=clock) as bar:
        for _ in range(20):
            clock.t += 0.5
            bar.update()
    lines = out.getvalue().splitlines()
    assert len(lines) == 11  # the start, then 10 %, 20 %, ..., 100 %
    assert lines[-1].startswith("frames  20/20") and "100%" in lines[-1]
    assert "2.00 fps" in lines[-1] and "ETA 0:00" in lines[-1]


def test_progress_resumed_counts_and_eta():
    out, clock = _pyio.StringIO(), FakeClock()
    bar = Progress(100, initial=50, stream=out, tty=False, clock=clock)
    clock.t = 10.0
    bar.update(10)  # 10 frames in 10 s: 1 fps, 40 left
    assert "60/100" in bar.text() and "1.00 fps" in bar.text() and "ETA 0:40" in bar.text()


def test_progress_tty_redraws_one_line():
    out, clock = _pyio.StringIO(), FakeClock()
    for _ in progress(range(5), stream=out, tty=True, clock=clock):
        clock.t += 1.0
    text = out.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1
    assert "\r" in text and "5/5" in text


def test_progress_disabled_and_unknown_total():
    out = _pyio.StringIO()
    assert list(progress(iter([1, 2]), stream=out, enabled=False)) == [1, 2]
    assert out.getvalue() == ""
    bar = Progress(None, stream=out, tty=False)
    bar.update(3)
    assert bar.text().startswith("frames  3")


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_follow_the_umask(tmp_path, umask):
    """mkstemp makes 0600 files; what the atomic writers leave follows the umask, as
    any file the user makes (another account or a server must read the noise)."""
    old = os.umask(umask)
    try:
        cio.save_npy_atomic(tmp_path / "a.npy", np.zeros(3))
        cio.write_json_atomic(tmp_path / "b.json", {"x": 1})
        cio.write_png_atomic(tmp_path / "c.png", np.zeros((2, 2, 3), np.uint8))
        paths = [tmp_path / n for n in ("a.npy", "b.json", "c.png")]
        with cio.atomic_path(tmp_path / "d.exr") as tmp:
            Path(tmp).write_bytes(b"x")
        paths.append(tmp_path / "d.exr")
    finally:
        os.umask(old)
    for p in paths:
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o666 & ~umask, p
