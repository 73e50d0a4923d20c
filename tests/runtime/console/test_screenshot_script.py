"""scripts/console_screenshots.py compresses each PNG again without changing a pixel."""

from __future__ import annotations

import importlib.util
import struct
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import ModuleType

REPO = Path(__file__).resolve().parents[3]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "console_screenshots", REPO / "scripts" / "console_screenshots.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _png(pixels: bytes, width: int, height: int, *, level: int) -> bytes:
    script = _script()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"".join(
        [
            script.PNG_SIGNATURE,
            script._chunk(b"IHDR", header),
            script._chunk(b"tEXt", b"Software\x00a browser"),
            script._chunk(b"IDAT", zlib.compress(pixels, level)),
            script._chunk(b"IEND", b""),
        ]
    )


def test_recompress_keeps_the_pixels_and_drops_the_metadata(tmp_path: Path) -> None:
    width, height = 64, 48
    rows = [b"\x00" + bytes((x * 3 + y) % 256 for x in range(width * 3)) for y in range(height)]
    pixels = b"".join(rows)
    picture = tmp_path / "page.png"
    picture.write_bytes(_png(pixels, width, height, level=0))
    script = _script()
    before, after = script.recompress(picture)
    assert after < before
    chunks = script._chunks(picture.read_bytes())
    assert [kind for kind, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    assert zlib.decompress(chunks[1][1]) == pixels
