"""Regenerate the console's screenshots in docs/images/console (1280x800 PNGs).

    python scripts/console_screenshots.py [--out DIR]

The pictures are taken by the console's browser test (tests/runtime/console/
test_browser.py) while it walks the pages against a real ``crank run``: it saves
one whenever ``CRANK_CONSOLE_SCREENSHOTS`` names a folder. So the screenshots show
exactly what the test checked. Needs what the test needs: the system's chromium
and chromedriver (scripts/setup-system.sh) and selenium (the test extra). Each PNG
is then compressed again at zlib's highest level with its metadata chunks dropped.
"""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "docs" / "images" / "console"
BROWSER_TEST = "tests/runtime/console/test_browser.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: the chunks a screenshot needs to be shown; the rest (text, time, colour profile) go.
KEPT_CHUNKS = {b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"}


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG file")
    chunks, at = [], len(PNG_SIGNATURE)
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind = data[at + 4 : at + 8]
        chunks.append((kind, data[at + 8 : at + 8 + length]))
        at += 12 + length
    return chunks


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def recompress(path: Path) -> tuple[int, int]:
    """Rewrite the PNG at ``path`` with its pixels compressed at level 9; (before, after)."""
    data = path.read_bytes()
    chunks = _chunks(data)
    pixels = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    out = [PNG_SIGNATURE]
    for kind, body in chunks:
        if kind == b"IDAT":
            continue
        if kind == b"IEND":
            out.append(_chunk(b"IDAT", zlib.compress(pixels, 9)))
        if kind in KEPT_CHUNKS:
            out.append(_chunk(kind, body))
    smaller = b"".join(out)
    if len(smaller) < len(data):
        path.write_bytes(smaller)
        return len(data), len(smaller)
    return len(data), len(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the PNGs")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    env = {**os.environ, "CRANK_CONSOLE_SCREENSHOTS": str(out)}
    command = [sys.executable, "-m", "pytest", BROWSER_TEST, "-q", "-p", "no:cacheprovider"]
    done = subprocess.run(command, cwd=REPO, env=env, check=False)
    if done.returncode != 0:
        print("console_screenshots: the browser test failed; no screenshot kept", file=sys.stderr)
        return done.returncode
    pictures = sorted(out.glob("*.png"))
    if not pictures:
        print("console_screenshots: the browser test saved no screenshot", file=sys.stderr)
        return 1
    for picture in pictures:
        before, after = recompress(picture)
        print(f"{picture.relative_to(REPO) if picture.is_relative_to(REPO) else picture}: "
              f"{after // 1024} KiB (was {before // 1024} KiB)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
