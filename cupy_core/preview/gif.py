"""A small animated-GIF (GIF89a) writer: NumPy and the standard library only.

Frames are palette images (uint8 indices into one global palette of at most 256
colours). Each frame after the first is stored as the rectangle of pixels that changed,
with the unchanged ones inside it transparent (disposal "leave in place"), which keeps
still parts of an animation (labels, a fixed-noise panel) almost free. The pixel data is
LZW-compressed (variable code size up to 12 bits, a clear code when the table is full);
the bit packing is vectorised, the dictionary loop is plain Python.
"""
import os
import struct
import sys

import numpy as np

__all__ = ["encode_gif", "lzw_encode", "TRANSPARENT"]

# The palette index kept for "unchanged pixel" in the frames after the first: images
# passed to encode_gif must not use it.
TRANSPARENT = 255


def lzw_encode(indices, min_code_size=8):
    """The GIF LZW code stream of ``indices`` (bytes-like of values < 2**min_code_size),
    packed least significant bit first, without the sub-block framing."""
    data = bytes(indices)
    clear = 1 << min_code_size
    eoi = clear + 1
    codes = [clear]
    if data:
        table = {}
        get = table.get
        emit = codes.append
        next_code = eoi + 1
        w = data[0]
        for c in data[1:]:
            key = (w << 8) | c
            found = get(key)
            if found is None:
                emit(w)
                table[key] = next_code
                next_code += 1
                if next_code == 4096:   # table full: start again
                    emit(clear)
                    table.clear()
                    next_code = eoi + 1
                w = c
            else:
                w = found
        emit(w)
    codes.append(eoi)
    codes = np.asarray(codes, dtype=np.uint32)
    # Code sizes: the decoder reads each code with as many bits as the largest code it
    # may see next. Each code the encoder emits adds one table entry, so the k-th code
    # after a clear (k = 0, 1, ...) may be as large as eoi + k: bit_length(eoi + k),
    # at most 12 bits. (The clear and the end codes follow the same rule.)
    idx = np.arange(len(codes))
    is_clear = codes == clear
    is_clear[0] = True
    last = np.maximum.accumulate(np.where(is_clear, idx, 0))
    prev = np.concatenate([[0], last[:-1]])
    since = np.where(is_clear, idx - prev - 1, idx - last - 1)
    sizes = np.minimum(np.floor(np.log2(eoi + np.maximum(since, 0))).astype(np.int64) + 1, 12)
    sizes[0] = min_code_size + 1
    return _pack_bits(codes, sizes)


def _pack_bits(codes, sizes):
    """Concatenate ``codes`` of ``sizes`` bits, least significant bit first."""
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    total = int(sizes.sum())
    bits = np.zeros(((total + 7) // 8) * 8, dtype=np.uint8)
    for k in range(int(sizes.max())):
        m = sizes > k
        bits[starts[m] + k] = (codes[m] >> k) & 1
    return np.packbits(bits, bitorder="little").tobytes()


def _sub_blocks(data):
    out = bytearray()
    for i in range(0, len(data), 255):
        chunk = data[i:i + 255]
        out.append(len(chunk))
        out += chunk
    out.append(0)
    return bytes(out)


def _lzw_all(images, workers):
    """LZW streams of several index images, in worker processes where that is safe
    and worth it (Linux's fork, more than one core, enough pixels), else here."""
    blobs = [np.ascontiguousarray(i).tobytes() for i in images]
    if workers is None:
        workers = min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                      else (os.cpu_count() or 1), 8)
    if (workers > 1 and len(blobs) > 1 and sum(map(len, blobs)) > 2_000_000
            and sys.platform.startswith("linux")):
        try:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            ctx = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                return list(pool.map(lzw_encode, blobs, chunksize=1))
        except Exception:   # no fork, no semaphores (some sandboxes): do it here
            pass
    return [lzw_encode(b) for b in blobs]


def encode_gif(frames, palette, *, delay_ms=100, loop=0, workers=None):
    """Bytes of an animated GIF.

    ``frames``: a sequence of uint8 ``(H, W)`` palette-index images, all the same
    shape, never using index ``TRANSPARENT`` (255); ``palette``: ``(N, 3)`` uint8 RGB,
    N <= 255; ``delay_ms``: time per frame (GIF stores hundredths of a second); ``loop``:
    0 plays forever; ``workers``: processes compressing frames (default: one per
    core, Linux only; 1 = none).
    """
    palette = np.asarray(palette, dtype=np.uint8)
    if palette.ndim != 2 or palette.shape[1] != 3 or not 1 <= len(palette) <= 255:
        raise ValueError(f"palette must be (N, 3) with 1 <= N <= 255, got {palette.shape}")
    table = np.zeros((256, 3), dtype=np.uint8)
    table[:len(palette)] = palette
    first = None
    out = bytearray()
    parts, images = [], []
    previous = None
    delay = max(1, int(round(delay_ms / 10.0)))
    for n, frame in enumerate(frames):
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 2:
            raise ValueError(f"frame {n} must be a uint8 (H, W) index image, "
                             f"got {frame.dtype} {frame.shape}")
        if first is None:
            first = frame.shape
            if min(first) < 1 or max(first) > 65535:
                raise ValueError(f"frame size {first} is not a GIF size")
            out += b"GIF89a" + struct.pack("<HHBBB", first[1], first[0], 0xF7, 0, 0)
            out += table.tobytes()
            # NETSCAPE2.0: loop count.
            out += b"\x21\xFF\x0BNETSCAPE2.0\x03\x01" + struct.pack("<H", loop) + b"\x00"
        elif frame.shape != first:
            raise ValueError(f"frame {n} is {frame.shape}, frame 0 is {first}")
        if int(frame.max()) >= len(palette):
            raise ValueError(f"frame {n} uses palette index {int(frame.max())}, the "
                             f"palette has {len(palette)} colours")
        if previous is None:
            top, left, image, transparent = 0, 0, frame, False
        else:
            changed = frame != previous
            if changed.any():
                rows = np.flatnonzero(changed.any(axis=1))
                cols = np.flatnonzero(changed.any(axis=0))
                top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
            else:
                top, bottom, left, right = 0, 1, 0, 1
            image = np.where(changed[top:bottom, left:right], frame[top:bottom, left:right],
                             np.uint8(TRANSPARENT)).astype(np.uint8)
            transparent = True
        previous = frame
        # Graphic control: disposal 1 (leave in place), transparency flag, delay.
        packed = (1 << 2) | (1 if transparent else 0)
        out += b"\x21\xF9\x04" + struct.pack("<BHB", packed, delay, TRANSPARENT) + b"\x00"
        h, w = image.shape
        out += b"\x2C" + struct.pack("<HHHHB", int(left), int(top), w, h, 0) + b"\x08"
        parts.append(bytes(out))
        images.append(image)
        out = bytearray()
    if first is None:
        raise ValueError("no frames to encode")
    streams = _lzw_all(images, workers)
    return b"".join(p + _sub_blocks(z) for p, z in zip(parts, streams)) + b"\x3B"
