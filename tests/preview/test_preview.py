"""cupy_core.preview (issue 16): the GIF encoder (decoded by Pillow, an independent
decoder), the panel layout, the flicker figure on a known integer translation, and the
previews of a bake folder."""
import io
import json
import subprocess
import sys

import numpy as np
import pytest

import cupy_core
from cupy_core.conventions import pixel_centers
from cupy_core.preview import (make_layout, panel_shapes, preview_bake, preview_sequences,
                               render_frames)
from cupy_core.preview.animation import ROW_PIXELS, ROW_SOFT
from cupy_core.preview.flicker import (backward_sample, expected_tolerance, flicker_table,
                                       format_flicker, warping_error)
from cupy_core.preview.font import draw_text, text_mask, text_size
from cupy_core.preview.gif import TRANSPARENT, encode_gif, lzw_encode
from cupy_core.preview.slices import auto_line, line_samples, space_time

Image = pytest.importorskip("PIL.Image")


def decode(data):
    """Every frame of a GIF as RGB arrays, by Pillow."""
    im = Image.open(io.BytesIO(data))
    frames = []
    for i in range(im.n_frames):
        im.seek(i)
        frames.append(np.asarray(im.convert("RGB")))
    return im, frames


# --------------------------------------------------------------------------- GIF

@pytest.mark.parametrize("colours,shape", [(2, (1, 1)), (3, (5, 7)), (200, (61, 97)),
                                           (255, (130, 170))])
def test_gif_frames_decode_exactly(colours, shape):
    rng = np.random.default_rng(colours)
    palette = rng.integers(0, 256, (colours, 3)).astype(np.uint8)
    frames = [rng.integers(0, colours, shape).astype(np.uint8) for _ in range(3)]
    frames.append(frames[-1].copy())                         # nothing changes
    changed = frames[-1].copy()
    changed[0, 0] = (int(changed[0, 0]) + 1) % colours       # one pixel changes
    frames.append(changed)
    blocks = np.repeat(np.repeat(rng.integers(0, colours, (shape[0] // 4 + 1,
                                                           shape[1] // 4 + 1)), 4, 0), 4, 1)
    frames.append(blocks[:shape[0], :shape[1]].astype(np.uint8))
    data = encode_gif(frames, palette, delay_ms=70, workers=1)
    im, got = decode(data)
    assert im.n_frames == len(frames)
    assert im.size == (shape[1], shape[0])
    assert im.info["duration"] == 70 and im.info["loop"] == 0
    for f, g in zip(frames, got):
        np.testing.assert_array_equal(g, palette[f])


def test_gif_long_streams_reset_the_table():
    # Random data fills the 4096-entry table many times over: clear codes and code
    # sizes at every boundary must agree with the decoder.
    rng = np.random.default_rng(5)
    palette = rng.integers(0, 256, (250, 3)).astype(np.uint8)
    frames = [rng.integers(0, 250, (300, 400)).astype(np.uint8),
              np.zeros((300, 400), np.uint8)]
    serial = encode_gif(frames, palette, workers=1)
    assert encode_gif(frames, palette, workers=2) == serial     # processes: same bytes
    _, got = decode(serial)
    for f, g in zip(frames, got):
        np.testing.assert_array_equal(g, palette[f])


def test_gif_input_checks():
    pal = np.zeros((4, 3), np.uint8)
    with pytest.raises(ValueError, match="palette index"):
        encode_gif([np.full((2, 2), 4, np.uint8)], pal)
    with pytest.raises(ValueError, match="frame 1"):
        encode_gif([np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8)], pal)
    with pytest.raises(ValueError, match="no frames"):
        encode_gif([], pal)
    with pytest.raises(ValueError, match="palette"):
        encode_gif([np.zeros((2, 2), np.uint8)], np.zeros((256, 3), np.uint8))
    assert TRANSPARENT == 255
    assert lzw_encode(b"") and lzw_encode(b"\x00")


# --------------------------------------------------------------------------- font

def test_font():
    m = text_mask("AB 1", 2)
    assert m.shape == text_size("AB 1", 2) == (14, (6 * 4 - 1) * 2)
    assert not m[:, 2 * 12:2 * 17].any()                     # the space is blank
    assert m[:, :10].any()
    np.testing.assert_array_equal(text_mask("a"), text_mask("A"))
    canvas = np.zeros((5, 5), np.uint8)
    draw_text(canvas, "W", -3, 2, 9)                            # clipped, no error
    assert canvas.max() == 9


# --------------------------------------------------------------------------- layout

def test_panel_shapes():
    assert panel_shapes((256, 256), 192, 3) == ((192, 192), (192, 192), (64, 64))
    assert panel_shapes((144, 256), 256, 4) == ((144, 256), (144, 256), (36, 64))
    assert panel_shapes((32, 48), 192, 4) == ((128, 192), (128, 192), (32, 48))
    assert panel_shapes((20, 10), 100, 8) == ((96, 48), (100, 50), (12, 6))


def test_layout_places_panels_in_a_grid():
    cols = ("SCENE", "WARPED", "FIXED", "FRESH")
    lay = make_layout(cols, (144, 256), (144, 256), footer_lines=3)
    assert set(lay.panels) == {(r, c) for r in (ROW_PIXELS, ROW_SOFT) for c in cols}
    boxes = []
    for r in (ROW_PIXELS, ROW_SOFT):
        lefts = [lay.panels[(r, c)][1] for c in cols]
        tops = {lay.panels[(r, c)][0] for c in cols}
        assert len(tops) == 1                                    # a row
        assert lefts == sorted(lefts)                            # in order
        for c in cols:
            top, left, h, w = lay.panels[(r, c)]
            assert (h, w) == (144, 256)
            assert 0 <= top and top + h <= lay.height and 0 <= left and left + w <= lay.width
            ct, cl = lay.captions[(r, c)]
            assert cl == left and ct + 7 <= top                  # label above its panel
            boxes.append((top, left, h, w))
    for c in cols:                                               # columns line up
        assert lay.panels[(ROW_PIXELS, c)][1] == lay.panels[(ROW_SOFT, c)][1]
    assert lay.panels[(ROW_SOFT, "SCENE")][0] > lay.panels[(ROW_PIXELS, "SCENE")][0] + 144
    for i, a in enumerate(boxes):                                # no overlap
        for b in boxes[i + 1:]:
            assert (a[0] + a[2] <= b[0] or b[0] + b[2] <= a[0] or
                    a[1] + a[3] <= b[1] or b[1] + b[3] <= a[1])
    assert lay.footer[0] >= max(t + h for t, _, h, _ in boxes)
    assert lay.footer[0] + lay.footer[2] <= lay.height
    assert lay.width == 2 * 8 + 4 * 256 + 3 * 8


def test_rendered_panels_show_the_frames():
    """The pixel panels hold the window enlarged, nearest neighbour; fixed = frame 0."""
    rng = np.random.default_rng(0)
    warped = [rng.standard_normal((24, 32, 2)).astype(np.float32) for _ in range(3)]
    scene = [np.full((24, 32, 3), (200, 30, 30), np.uint8) for _ in range(3)]
    kinds = {"warped": warped, "fixed": [warped[0]] * 3}
    frames, palette, lay, crop = render_frames(kinds, scene, zoom=4, panel=64,
                                               crop=(4, 6), blur=1.0)
    assert len(frames) == 3
    assert crop == (4, 6)
    (ph, pw), _, (ch, cw) = panel_shapes((24, 32), 64, 4)
    assert (ph, pw) == (48, 64) and (ch, cw) == (12, 16)
    # the window is kept inside the frame
    assert render_frames(kinds, None, zoom=4, panel=64, crop=(100, -5))[3] == (12, 0)
    assert render_frames(kinds, None, zoom=2, panel=64, crop=(3, 3))[3] == (0, 0)
    for t in range(3):
        for name, src in (("WARPED", warped[t]), ("FIXED", warped[0])):
            top, left, h, w = lay.panels[(ROW_PIXELS, name)]
            panel = frames[t][top:top + h, left:left + w]
            window = src[4:16, 6:22, 0]
            expect = np.clip(0.5 + window / 6.0, 0, 1).repeat(4, 0).repeat(4, 1)
            np.testing.assert_array_equal(panel, palette.grey(expect))
        top, left, h, w = lay.panels[(ROW_PIXELS, "SCENE")]
        got = palette.colours[frames[t][top:top + h, left:left + w]]
        assert np.abs(got.astype(int) - (200, 30, 30)).max() <= 12
    assert not any((f == 255).any() for f in frames)            # never the transparent index


# --------------------------------------------------------------------------- flicker

def shifted_sequence(shape=(48, 64), channels=4, shift=(3, -2), count=6, seed=3):
    """Warped noise along an integer translation: content moves by ``shift`` (dx, dy)
    pixels per frame; returns (frames, backward positions)."""
    pos = pixel_centers(shape) - np.array(shift, dtype=np.float64)
    w = cupy_core.NoiseWarper(shape, channels, seed=seed, device="cpu")
    frames = [w.noise.copy()]
    for _ in range(count - 1):
        frames.append(w.step(pos, at="centers").copy())
    return frames, [pos] * (count - 1)


def test_flicker_integer_translation():
    shape, channels, shift, count = (48, 64), 4, (3, -2), 6
    frames, positions = shifted_sequence(shape, channels, shift, count)
    fixed = [frames[0]] * count
    fresh = [cupy_core.white_noise(shape, channels, seed=99, frame=f) for f in range(count)]
    table = flicker_table({"warped": frames, "fixed": fixed, "fresh": fresh}, positions)
    # Visible in both: all but the uncovered border (3 columns, 2 rows per frame).
    n = (shape[0] - 2) * (shape[1] - 3) * channels * (count - 1)
    for kind in table:
        assert table[kind]["all"].count == n
    assert table["warped"]["all"].value == 0.0                 # exactly
    assert all(v == 0.0 for v in table["warped"]["all"].per_frame)
    tol = expected_tolerance(n)                                # 5 standard errors
    assert tol < 0.1
    assert abs(table["fixed"]["all"].value - 2.0) < tol
    assert abs(table["fresh"]["all"].value - 2.0) < tol
    lines = format_flicker(table)
    assert lines == [f"all: warped 0.00  fixed {table['fixed']['all'].value:.2f}  "
                     f"fresh {table['fresh']['all'].value:.2f}"]


def test_flicker_regions_and_masks():
    frames, positions = shifted_sequence(count=4)
    left = np.zeros((48, 64), bool)
    left[:, :32] = True
    stats = warping_error([frames[0]] * 4, positions,
                          {"left": [left] * 4, "right": lambda t: ~left,
                           "nothing": [np.zeros_like(left)] * 4})
    assert stats["left"].count + stats["right"].count == (46 * 61 * 4 * 3)
    assert stats["nothing"].count == 0 and np.isnan(stats["nothing"].value)
    # NaN positions (disoccluded) do not count.
    pos = positions[0].copy()
    pos[:10] = np.nan
    moved, valid = backward_sample(frames[0], pos)
    # content moves 3 right and 2 up: frame t's pixel (i, j) was (i + 2, j - 3)
    assert not valid[:10].any() and valid[10:46, 3:].all()
    assert not valid[:, :3].any() and not valid[46:].any()
    np.testing.assert_array_equal(moved[10:46, 3:], frames[0][12:48, :-3])
    with pytest.raises(ValueError, match="region"):
        warping_error(frames, positions, {"bad": [np.ones((3, 3), bool)] * 6})


def test_backward_sample_bilinear_on_integer_shift():
    frames, positions = shifted_sequence(count=2)
    a, va = backward_sample(frames[0], positions[0], "nearest")
    b, vb = backward_sample(frames[0], positions[0], "bilinear")
    np.testing.assert_array_equal(va, vb)
    np.testing.assert_allclose(a[va], b[vb], atol=1e-6)
    assert warping_error(frames, positions, mode="bilinear")["all"].value < 1e-12


# --------------------------------------------------------------------------- slices

def test_space_time_slices():
    frames, positions = shifted_sequence(shape=(40, 50), shift=(2, 0), count=5)
    line = ((0.0, 20.5), (50.0, 20.5))
    rows, cols = line_samples(line, (40, 50))
    np.testing.assert_array_equal(rows, 20)
    np.testing.assert_array_equal(cols, np.arange(50))
    st = space_time([f[..., 0] for f in frames], line)
    assert st.shape == (5, 50)
    for t in range(1, 5):        # the streaks: each row is the one above moved by 2
        np.testing.assert_array_equal(st[t, 2:], st[t - 1, :-2])
    # The automatic line runs through the moving part along its motion.
    moving = [pixel_centers((40, 50)) for _ in range(3)]
    for p in moving:
        p[10:20, 5:15] -= (1.0, 1.0)                            # a block moving diagonally
    (x0, y0), (x1, y1) = auto_line((40, 50), moving)
    assert x1 > x0 and abs((y1 - y0) / (x1 - x0) - 1.0) < 1e-9
    assert abs((10.0 - x0) * (y1 - y0) / (x1 - x0) + y0 - 15.0) < 1e-6   # through (10, 15)
    assert auto_line((40, 50)) == ((0.0, 20.0), (50.0, 20.0))


# --------------------------------------------------------------------------- entry points

def test_preview_bake_from_a_bake_folder(tmp_path):
    from cupy_core.bake.loop import bake_flow_sequence

    shape, count = (32, 40), 6
    flows = np.zeros((count - 1,) + shape + (2,), np.float32)
    flows[..., 0] = -2.0                                         # content moves 2 px right
    flows[:, :, :2] = np.nan                                     # uncovered: no source
    bake = tmp_path / "bake"
    bake_flow_sequence(np.asarray(flows) + pixel_centers(shape), bake, seed=7, channels=3,
                       first_frame=5, progress=False)
    renders = [np.full(shape + (3,), 40 * t, np.uint8) for t in range(count)]
    result = preview_bake(bake, tmp_path / "out", flows=flows, renders=renders, zoom=2,
                          panel=64)
    assert result.frames == count
    im, got = decode(result.gif.read_bytes())
    assert im.n_frames == count
    assert result.slices.is_file() and Image.open(result.slices).size[0] > 100
    record = json.loads(result.flicker_json.read_text())
    assert record["kinds"]["warped"]["all"]["flicker"] == 0.0
    n = record["kinds"]["fixed"]["all"]["values"]
    assert n == (40 - 2) * 32 * 3 * (count - 1)
    for kind in ("fixed", "fresh"):
        assert abs(record["kinds"][kind]["all"]["flicker"] - 2.0) < expected_tolerance(n)
    assert set(record["kinds"]["warped"]) == {"all", "moving (>= 0.5 px/frame)",
                                              "still (< 0.5 px/frame)"}
    assert record["kinds"]["warped"]["still (< 0.5 px/frame)"]["values"] == 0
    # The fresh noise is white_noise with another seed at the bake's frame numbers.
    stats = result.flicker["fresh"]["all"]
    assert stats.count == n
    # Without motion: the pictures, no figure.
    bare = preview_bake(bake, tmp_path / "bare", max_frames=3)
    assert bare.flicker_json is None and bare.flicker == {}
    assert decode(bare.gif.read_bytes())[0].n_frames == 3
    with pytest.raises(ValueError, match="own seed"):
        preview_bake(bake, tmp_path / "x", fresh_seed=7)
    with pytest.raises(ValueError, match="backward maps"):
        preview_bake(bake, tmp_path / "x", flows=flows[:2])


def test_preview_sequences_defaults(tmp_path):
    frames, positions = shifted_sequence(shape=(24, 30), count=4)
    result = preview_sequences(tmp_path, frames, positions=positions, panel=60, zoom=3)
    im, got = decode(result.gif.read_bytes())
    assert im.n_frames == 4
    assert set(result.flicker) == {"warped", "fixed"}            # no fresh given
    assert result.flicker["warped"]["all"].value == 0.0


def test_core_and_preview_import_without_pillow(tmp_path):
    code = (
        "import sys; sys.modules['PIL'] = None\n"
        "import numpy as np, cupy_core\n"
        "from cupy_core.preview import preview_sequences\n"
        "f = [cupy_core.white_noise((16, 16), 1, frame=t) for t in range(3)]\n"
        f"r = preview_sequences({str(tmp_path)!r}, f, panel=32, zoom=2)\n"
        "assert r.gif.read_bytes()[:6] == b'GIF89a'\n"
        "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
