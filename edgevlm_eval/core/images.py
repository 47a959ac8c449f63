"""Loading frame images with a clear reason when one is missing or corrupt.

The runner marks such a frame invalid (reason in the per-frame log, counted in the results)
and goes on; it never stops a run.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError


class ImageError(Exception):
    """A frame image that cannot be used; str(e) is the reason logged for the frame."""


def load_image(path: str | Path) -> Image.Image:
    """The image as RGB, fully decoded (so truncation is caught here, not inside a model)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except FileNotFoundError:
        raise ImageError(f"missing image: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"corrupt image: {path} ({type(e).__name__}: {e})") from None


def check_image(path: str | Path) -> str | None:
    """None if the image decodes, else the reason."""
    try:
        load_image(path)
        return None
    except ImageError as e:
        return str(e)
