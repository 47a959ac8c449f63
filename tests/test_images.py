"""Frame images: a missing, corrupt, unreadable or too large image is an ImageError with its reason,
never another exception (the engine and the adapters turn ImageError into an invalid frame)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from edgevlm_eval.core.errors import ConfigError
from edgevlm_eval.core.images import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV, ImageError, check_image, load_image


def tiny_huge_png(path: Path, width: int, height: int) -> Path:
    """A valid 1-bit PNG that declares width x height pixels of zeros: a few kilobytes on disk."""
    row = b"\x00" + b"\x00" * ((width + 7) // 8)  # filter byte + packed bits

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def test_decompression_bomb_is_an_image_error(tmp_path):
    # 15000 x 15000 = 225 Mpx in 27 KB: PIL raises DecompressionBombError (not an OSError) when opening it
    bomb = tiny_huge_png(tmp_path / "bomb.png", 15000, 15000)
    assert bomb.stat().st_size < 40_000
    reason = check_image(bomb)
    assert reason is not None and reason.startswith(f"image too large: {bomb}")
    assert "225000000 pixels" in reason and MAX_PIXELS_ENV in reason
    with pytest.raises(ImageError, match="image too large"):
        load_image(bomb)


def test_large_image_under_pils_threshold_is_refused_before_decoding(tmp_path):
    # 9000 x 9000 = 81 Mpx: PIL only warns (its limit is 89 Mpx) and would decode 243 MB of RGB
    big = tiny_huge_png(tmp_path / "big.png", 9000, 9000)
    reason = check_image(big)
    assert reason == (f"image too large: {big} is 9000x9000 = 81,000,000 pixels, above the limit of "
                      f"{DEFAULT_MAX_PIXELS:,} (${MAX_PIXELS_ENV} raises it)")


def test_pixel_limit_is_configurable(tmp_path, monkeypatch):
    p = tmp_path / "a.png"
    Image.new("RGB", (10, 8), (1, 2, 3)).save(p)
    assert check_image(p) is None
    assert check_image(p, max_pixels=79).startswith(f"image too large: {p} is 10x8 = 80 pixels")
    assert check_image(p, max_pixels=80) is None
    monkeypatch.setenv(MAX_PIXELS_ENV, "79")
    assert "above the limit of 79" in check_image(p)
    monkeypatch.setenv(MAX_PIXELS_ENV, "80")
    assert load_image(p).size == (10, 8)
    monkeypatch.setenv(MAX_PIXELS_ENV, "many")
    with pytest.raises(ConfigError, match=f"{MAX_PIXELS_ENV}: expected a positive whole number of pixels"):
        check_image(p)


def test_missing_corrupt_truncated_and_folder(tmp_path):
    good = tmp_path / "good.png"
    Image.new("RGB", (64, 64), (10, 200, 30)).save(good)
    assert load_image(good).getpixel((0, 0)) == (10, 200, 30)
    assert check_image(tmp_path / "nope.png") == f"missing image: {tmp_path / 'nope.png'}"
    (tmp_path / "empty.png").write_bytes(b"")
    assert check_image(tmp_path / "empty.png").startswith("corrupt image:")
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:60])
    assert check_image(tmp_path / "cut.png").startswith(f"corrupt image: {tmp_path / 'cut.png'}")
    (tmp_path / "dir.png").mkdir()
    assert check_image(tmp_path / "dir.png") == \
        f"unreadable image: {tmp_path / 'dir.png'} (IsADirectoryError: Is a directory)"
