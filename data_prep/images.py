"""Decoding, cleaning and re-encoding one source image (runs in the worker processes).

Real archives contain CMYK and grayscale JPEGs, PNGs named .JPEG and truncated files; PIL detects the
real format from the content, every mode is converted to RGB, and a truncated file raises instead of
being silently padded (PIL's LOAD_TRUNCATED_IMAGES stays False).
"""

import io
import math

import numpy as np
from PIL import Image

BAD_IMAGE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def load_rgb(src, max_side=0):
    """PIL RGB image from a path or an HWC uint8 array; JPEGs larger than 2 * max_side are decoded at a
    reduced DCT scale (draft), which is much faster and loses nothing after the resize."""
    if isinstance(src, np.ndarray):
        return Image.fromarray(src)
    with Image.open(src) as im:
        w, h = im.size
        if max_side and im.format == "JPEG" and max(w, h) >= 2 * max_side:
            s = max_side / max(w, h)  # draft keeps both sides >= the request, so ask for the target size
            im.draft(None, (math.ceil(w * s), math.ceil(h * s)))
        im.load()
        if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
            # Composite on white: transparent pixels must not turn black.
            rgba = im.convert("RGBA")
            bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(bg, rgba).convert("RGB")
        return im.convert("RGB")


def resize_max(im, max_side):
    """Shrink so the longer side is <= max_side, keeping the aspect ratio (0 = keep the size)."""
    w, h = im.size
    if not max_side or max(w, h) <= max_side:
        return im
    s = max_side / max(w, h)
    return im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS)


def encode_jpeg(im, quality):
    """Deterministic JPEG bytes (same input and settings -> same bytes, which resume relies on)."""
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def prepare(task):
    """Worker entry: (index, src, max_side, quality) -> (index, jpeg bytes or None, error or None)."""
    i, src, max_side, quality = task
    try:
        im = resize_max(load_rgb(src, max_side), max_side)
        return i, encode_jpeg(im, quality), None
    except BAD_IMAGE_ERRORS as e:
        return i, None, f"{type(e).__name__}: {e}".replace("\n", " ")


def decode_array(src):
    """HWC uint8 RGB array of a source image (for the in-RAM .npz writer)."""
    return np.asarray(load_rgb(src))
