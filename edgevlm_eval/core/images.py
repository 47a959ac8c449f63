"""Loading frame images with a clear reason when one is missing, corrupt or too large.

The runner marks such a frame invalid (reason in the per-frame log, counted in the results)
and goes on; it never stops a run.

Size limit: an image of more than `max_image_pixels()` pixels (default 8192 x 8192; the
environment variable EDGEVLM_MAX_IMAGE_PIXELS changes it) is refused before it is decoded. A few
kilobytes of PNG can declare 15000 x 15000 pixels, which would take gigabytes to decode; PIL
itself refuses images above twice its own limit with a DecompressionBombError, which becomes the
same "image too large" reason here.
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from edgevlm_eval.core.errors import ConfigError

MAX_PIXELS_ENV = "EDGEVLM_MAX_IMAGE_PIXELS"
# 8192 x 8192 = 67 Mpx: above any camera frame a VLM is fed (8K video is 33 Mpx), below PIL's own
# warning threshold (89 Mpx), and about 200 MB once decoded to RGB.
DEFAULT_MAX_PIXELS = 8192 * 8192


class ImageError(Exception):
    """A frame image that cannot be used; str(e) is the reason logged for the frame."""


def max_image_pixels() -> int:
    """The pixel limit: $EDGEVLM_MAX_IMAGE_PIXELS when set, else DEFAULT_MAX_PIXELS."""
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigError(f"${MAX_PIXELS_ENV}: expected a positive whole number of pixels (e.g. 67108864 for "
                          f"8192 x 8192), got {raw!r}")
    return value


def load_image(path: str | Path, *, max_pixels: int | None = None) -> Image.Image:
    """The image as RGB, fully decoded (so truncation is caught here, not inside a model).
    Raises ImageError, whose text names the file and the reason, for anything that is not a
    usable image of at most `max_pixels` pixels (default: max_image_pixels())."""
    limit = max_image_pixels() if max_pixels is None else int(max_pixels)
    if limit > Image.MAX_IMAGE_PIXELS:
        # the user asked for larger images than PIL's default guard allows: let PIL open them
        Image.MAX_IMAGE_PIXELS = limit
    path = Path(path)
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > limit:
                raise ImageError(f"image too large: {path} is {w}x{h} = {w * h:,} pixels, above the limit of "
                                 f"{limit:,} (${MAX_PIXELS_ENV} raises it)")
            im.load()
            return im.convert("RGB")
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"missing image: {path}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        # PIL checks the declared size when it opens the file, before the check above
        raise ImageError(f"image too large: {path} (PIL: {e}; the toolkit's limit is {limit:,} pixels, "
                         f"${MAX_PIXELS_ENV} raises it)") from None
    except (PermissionError, IsADirectoryError) as e:
        raise ImageError(f"unreadable image: {path} ({type(e).__name__}: {e.strerror})") from None
    except MemoryError:
        raise ImageError(f"image too large: {path} (out of memory while decoding it)") from None
    except Exception as e:  # noqa: BLE001 - any decoder failure (OSError, SyntaxError, struct.error, ...)
        raise ImageError(f"corrupt image: {path} ({type(e).__name__}: {e})") from None


def check_image(path: str | Path, *, max_pixels: int | None = None) -> str | None:
    """None if the image decodes, else the reason."""
    try:
        load_image(path, max_pixels=max_pixels)
        return None
    except ImageError as e:
        return str(e)
