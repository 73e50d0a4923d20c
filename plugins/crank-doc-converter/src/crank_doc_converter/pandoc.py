"""Running pandoc with a deadline.

pypandoc finds pandoc and tells its version; the conversion itself runs pandoc
through :func:`subprocess.run` because pypandoc has no timeout: on expiry the
pandoc process is killed and :class:`PandocTimeout` is raised.

Reading always happens with ``--sandbox`` (no file or network access from
``include`` directives and the like). pandoc 2.17's sandbox also blocks its own
docx/odt templates, so binary outputs are made in two steps: a sandboxed read
into pandoc's JSON AST, then an unsandboxed write from that AST. The docx and odt
writers embed every image they can fetch, a local file (``![](/etc/passwd)``) or a
URL alike: the read replaces each image that is not already embedded (a ``data:``
URI) by its description, as a sandboxed write would, so the write fetches nothing.
"""

from __future__ import annotations

import functools
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

#: The Lua filter that turns images not embedded in the document into their description.
LOCAL_IMAGES_FILTER = Path(__file__).with_name("local_images.lua")


class PandocMissing(Exception):
    """pandoc is not installed (or not on PATH)."""


class PandocFailed(Exception):
    """pandoc exited non-zero; ``message`` is the useful part of its stderr."""

    def __init__(self, message: str, returncode: int) -> None:
        super().__init__(message)
        self.message = message
        self.returncode = returncode


class PandocTimeout(Exception):
    """pandoc ran past its time limit and was killed."""


@dataclass(frozen=True)
class Pandoc:
    path: str
    version: str


#: The oldest pandoc that knows ``--sandbox``, which every read uses.
MIN_VERSION = (2, 15)
INSTALL_HINT = "apt-get install pandoc (or brew install pandoc), version 2.15 or later"


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for part in version.split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


@functools.cache
def find_pandoc() -> Pandoc:
    """The pandoc to run; :class:`PandocMissing` says why there is none (missing, too old)."""
    import pypandoc

    try:
        found = Pandoc(pypandoc.get_pandoc_path(), pypandoc.get_pandoc_version())
    except OSError:
        # pypandoc's own words point at pypandoc.download_pandoc(); this worker's are apt
        raise PandocMissing(f"pandoc is not installed or not on PATH: {INSTALL_HINT}") from None
    if _version_tuple(found.version) < MIN_VERSION:
        raise PandocMissing(
            f"pandoc {found.version} ({found.path}) is too old: this worker reads every "
            f"document with --sandbox, new in pandoc 2.15; {INSTALL_HINT}"
        )
    return found


def _run(args: list[str], data: bytes, deadline: float) -> bytes:
    left = deadline - time.monotonic()
    if left <= 0:
        raise PandocTimeout("no time left for pandoc")
    try:
        done = subprocess.run(args, input=data, capture_output=True, timeout=left, check=False)
    except subprocess.TimeoutExpired as exc:  # subprocess.run has killed pandoc already
        raise PandocTimeout(f"pandoc did not finish within {exc.timeout:.3g} s") from None
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
        raise PandocFailed(
            lines[-1] if lines else f"exit status {done.returncode}", done.returncode
        )
    return done.stdout


def convert(
    data: bytes,
    reader: str,
    writer: str,
    *,
    binary_output: bool,
    extra_args: list[str],
    timeout_s: float,
) -> bytes:
    """Convert ``data`` from ``reader`` to ``writer`` within ``timeout_s`` seconds."""
    exe = find_pandoc().path
    deadline = time.monotonic() + timeout_s
    if not binary_output:
        return _run([exe, "--sandbox", "-f", reader, "-t", writer, *extra_args], data, deadline)
    read = [exe, "--sandbox", "-f", reader, "-t", "json", "--lua-filter", str(LOCAL_IMAGES_FILTER)]
    ast = _run(read, data, deadline)
    return _run([exe, "-f", "json", "-t", writer, *extra_args, "-o", "-"], ast, deadline)
