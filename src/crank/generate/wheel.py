"""A wheel of the running crank, for the image ``crank build`` makes.

crank is not (yet) on a package index under its distribution name, so an image
cannot ``pip install`` it from there. The image gets the very crank that runs on
the host instead:

* installed from a wheel (what users have): the installed files, listed and
  hashed in the distribution's ``RECORD``, are packed back into a wheel. Every
  file is checked against its recorded hash first, so an installation edited in
  place is refused rather than shipped. The packing is deterministic (sorted
  entries, fixed timestamps): the same installation always gives the same bytes.
* a source checkout (an editable install, what crank's developers have): the
  wheel is built from the source tree with ``pip wheel``.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path, PurePosixPath

from crank import DISTRIBUTION
from crank.errors import GenerateError

#: Files pip writes into ``.dist-info`` at install time; a wheel never carries them.
INSTALL_ONLY = frozenset({"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"})
#: 1980-01-01, the earliest time a zip entry can hold (what reproducible wheels use).
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode("ascii")


def _is_editable(dist: metadata.Distribution) -> bool:
    text = dist.read_text("direct_url.json")
    if not text:
        return False
    try:
        info = json.loads(text)
    except ValueError:
        return False
    return bool(isinstance(info, dict) and (info.get("dir_info") or {}).get("editable"))


def crank_source_dir() -> Path | None:
    """The source tree of the running crank (an editable install), if there is one."""
    root = Path(__file__).resolve().parents[3]
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and f'name = "{DISTRIBUTION}"' in pyproject.read_text(encoding="utf-8"):
        return root
    return None


def _wheel_tags(dist: metadata.Distribution) -> list[str]:
    text = dist.read_text("WHEEL") or ""
    return [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Tag:")]


def _installed_files(dist: metadata.Distribution) -> list[tuple[str, bytes]]:
    """``(archive name, content)`` of every file the wheel held, checked against RECORD."""
    files = dist.files
    if not files:
        raise GenerateError(
            f"the installed {DISTRIBUTION} has no RECORD of its files",
            hint=f"reinstall it with pip (pip install --force-reinstall {DISTRIBUTION})",
        )
    entries: list[tuple[str, bytes]] = []
    for file in files:
        name = PurePosixPath(file.as_posix() if hasattr(file, "as_posix") else str(file))
        if ".." in name.parts or name.suffix == ".pyc" or "__pycache__" in name.parts:
            continue  # console scripts (pip writes them from entry_points.txt) and bytecode
        if name.parts[0].endswith(".dist-info") and name.name in INSTALL_ONLY:
            continue
        path = Path(str(file.locate()))
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise GenerateError(
                f"the installed {DISTRIBUTION} lacks {name} ({exc.strerror or exc})",
                hint=f"reinstall it (pip install --force-reinstall {DISTRIBUTION})",
                subject=str(path),
            ) from None
        if file.hash is not None and _record_hash(data) != f"{file.hash.mode}={file.hash.value}":
            raise GenerateError(
                f"the installed {DISTRIBUTION} was changed after installation: {path} "
                "does not match its RECORD hash",
                hint=f"reinstall it (pip install --force-reinstall {DISTRIBUTION}), "
                "or pass --crank-wheel with a wheel you built",
                subject=str(path),
            )
        entries.append((name.as_posix(), data))
    return entries


def _zip_entry(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


def pack_installed_wheel(dest: Path, dist: metadata.Distribution | None = None) -> Path:
    """Pack the installed distribution (default: crank) back into a wheel in ``dest``."""
    dist = dist or metadata.distribution(DISTRIBUTION)
    name, version = dist.metadata["Name"], dist.version
    tags = _wheel_tags(dist) or ["py3-none-any"]
    stem = name.replace("-", "_").replace(".", "_")
    dist_info = f"{stem}-{version}.dist-info"
    entries = sorted(_installed_files(dist))
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for arcname, data in entries:
        writer.writerow([arcname, _record_hash(data), len(data)])
    writer.writerow([f"{dist_info}/RECORD", "", ""])
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / f"{stem}-{version}-{tags[0]}.whl"
    with zipfile.ZipFile(target, "w") as archive:
        for arcname, data in entries:
            _zip_entry(archive, arcname, data)
        _zip_entry(archive, f"{dist_info}/RECORD", record.getvalue().encode())
    return target


def build_source_wheel(source: Path, dest: Path) -> Path:
    """Build a wheel of the crank source tree at ``source`` into ``dest`` with pip."""
    dest.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dest), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    wheels = sorted(dest.glob("crank_workers-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise GenerateError(
            f"building the crank wheel from {source} failed: {proc.stderr.strip()[-500:]}",
            hint="pass --crank-wheel PATH to use a wheel you built",
            subject=str(source),
        )
    return wheels[-1]


def build_crank_wheel(dest: Path) -> Path:
    """A wheel of the running crank in ``dest``: from its source tree when it runs from
    one (an editable install), else packed from its installed files."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        dist = None
    source = crank_source_dir()
    if source is not None and (dist is None or _is_editable(dist)):
        return build_source_wheel(source, dest)
    if dist is None:
        raise GenerateError(
            f"cannot find the installed {DISTRIBUTION} distribution to put into the image",
            hint=f"install crank with pip (pip install {DISTRIBUTION}), or pass --crank-wheel PATH",
        )
    return pack_installed_wheel(dest, dist)
