"""``requirements.lock``: the exact, hashed set of packages a worker's image installs.

The lock is resolved by uv (``uv pip compile --universal --generate-hashes``) from
the worker's pyproject.toml (whose dependencies include the manifest's
``dependencies.python``), plus what the image alone needs (an init). It lists
every third-party distribution with its version and the sha256 of each of its
files; crank itself and the worker are left out: ``crank build`` ships them as
wheels it makes. ``crank check`` and ``crank build --locked`` call it stale when a
requirement of pyproject.toml, of crank or of the image is not locked, or locked
outside the range asked for.

``crank build`` then downloads the locked wheels (pip, hash-checked) into the
build context for every Python the image may have, and the image installs them
with ``--no-index --require-hashes``: no package index is needed inside the build.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from crank import DISTRIBUTION
from crank.errors import GenerateError
from crank.generate.context import PYTHON_VERSIONS
from crank.generate.wheel import build_crank_wheel

if TYPE_CHECKING:
    from collections.abc import Sequence

    from crank.generate.project import WorkerProject

LOCK_FILE = "requirements.lock"
#: What the image needs beyond the worker's own dependencies.
IMAGE_REQUIREMENTS = ("dumb-init>=1.2.5",)
#: The oldest glibc the wheelhouse serves (Debian bookworm): manylinux_2_17..2_36.
MAX_GLIBC_MINOR = 36


def _pyproject(project: WorkerProject) -> dict[str, object]:
    path = project.root / "pyproject.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GenerateError(
            f"{project.root}: no pyproject.toml to lock the dependencies of",
            hint="a worker project needs a pyproject.toml (crank new-worker writes one)",
            subject=str(path),
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise GenerateError(
            f"{path}: not valid TOML ({exc})", hint="fix the file", subject=str(path)
        ) from None
    project_table = data.get("project", {})
    return project_table if isinstance(project_table, dict) else {}


def crank_requirements() -> list[str]:
    """What the running crank requires (its Requires-Dist), extras left out."""
    from importlib import metadata

    try:
        found = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:  # pragma: no cover - crank runs installed
        return []
    return sorted(r for r in found if "extra ==" not in r.replace('"', "'"))


def _applies_on_linux(marker: str) -> bool:
    """Whether a requirement's marker holds for some supported CPython on Linux."""
    if not marker:
        return True

    probe = LockedRequirement("x", "0", marker, ())
    return any(
        _may_apply(probe, python, machine)
        for python in PYTHON_VERSIONS
        for machine in ("x86_64", "aarch64")
    )


def lock_problems(project: WorkerProject, text: str) -> list[str]:
    """Why the lock ``text`` does not serve the project: a requirement of pyproject.toml,
    of crank or of the image that it leaves out or pins outside the range asked for.

    A lock resolved from these requirements is consistent by construction (its own
    pins satisfy each other), so checking the direct requirements is enough; a new
    crank release or a raised minimum the lock already meets leaves it current.
    """
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    locked = {canonicalize_name(r.name): r.version for r in parse_lock(text)}
    deps = _pyproject(project).get("dependencies", [])
    wanted = [*(deps if isinstance(deps, list) else []), *crank_requirements(),
              *IMAGE_REQUIREMENTS]  # fmt: skip
    skip = {canonicalize_name(DISTRIBUTION), canonicalize_name(project.manifest.name)}
    problems = []
    for entry in wanted:
        try:
            req = Requirement(str(entry))
        except InvalidRequirement:
            problems.append(f"{entry!r} in pyproject.toml is not a valid requirement")
            continue
        name = canonicalize_name(req.name)
        if name in skip or not _applies_on_linux(str(req.marker) if req.marker else ""):
            continue
        if name not in locked:
            problems.append(f"{req} is not locked")
        elif not req.specifier.contains(locked[name], prereleases=True):
            problems.append(f"{req} is locked at {locked[name]}")
    return problems


LockStatus = Literal["missing", "current", "stale"]


def lock_state(project: WorkerProject) -> tuple[LockStatus, list[str]]:
    """``missing``, ``current`` or ``stale`` with the reasons (see :func:`lock_problems`)."""
    path = project.root / LOCK_FILE
    if path.exists() and not path.is_file():
        raise GenerateError(
            f"{path}: is a directory, not a lock file",
            hint="move it away, then run `crank lock` to write the lock",
            subject=str(path),
        )
    if not path.is_file():
        return "missing", []
    # read before the lock: a pyproject.toml that is not TOML cannot be locked either,
    # so it is an error of its own (exit 2), not a stale lock that `crank lock` fixes
    _pyproject(project)
    try:
        problems = lock_problems(project, path.read_text(encoding="utf-8", errors="replace"))
    except GenerateError as exc:
        return "stale", [exc.message]
    return ("stale", problems) if problems else ("current", [])


def lock_status(project: WorkerProject) -> LockStatus:
    return lock_state(project)[0]


def _uv() -> str:
    try:
        from uv import find_uv_bin
    except ImportError:  # pragma: no cover - uv is a dependency of crank
        raise GenerateError(
            "uv is not installed in crank's environment; crank locks with it",
            hint=f"pip install --force-reinstall {DISTRIBUTION}",
        ) from None
    return str(find_uv_bin())


def read_lock(path: Path) -> list[LockedRequirement] | None:
    """The packages of the lock at ``path``; None when there is none or it does not parse."""
    try:
        return parse_lock(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, GenerateError):
        return None


def write_lock(
    project: WorkerProject, *, crank_wheels: Path | None = None, upgrade: bool = False
) -> Path:
    """Resolve and write ``requirements.lock``; ``crank_wheels`` holds crank's wheel
    (made from the running crank when not given: crank is not on the package index).

    A version the current lock pins is kept while the requirements still allow it
    (a package nothing needs any more is dropped); ``upgrade`` resolves afresh, to
    the newest versions allowed."""

    with tempfile.TemporaryDirectory(prefix="crank-lock-") as tmp:
        work = Path(tmp)
        if crank_wheels is None:
            crank_wheels = work / "crank-wheel"
            build_crank_wheel(crank_wheels)
        # uv names its inputs in the lock's comments: fixed names keep it reproducible.
        (work / "pyproject.toml").write_bytes((project.root / "pyproject.toml").read_bytes())
        (work / "image.in").write_text("\n".join(IMAGE_REQUIREMENTS) + "\n", encoding="utf-8")
        current = project.root / LOCK_FILE
        if not upgrade and read_lock(current) is not None:
            # uv keeps the versions its output file already pins wherever the
            # requirements still allow them: locking again changes only what must change.
            (work / "locked.txt").write_bytes(current.read_bytes())
        argv = [
            _uv(), "pip", "compile", "pyproject.toml", "image.in",
            "--universal", "--generate-hashes", "--no-header", "--quiet",
            "--python-version", PYTHON_VERSIONS[0],
            "--find-links", str(crank_wheels),
            "--no-emit-package", DISTRIBUTION,
            "--output-file", "locked.txt",
        ]  # fmt: skip
        proc = subprocess.run(argv, cwd=work, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise GenerateError(
                f"locking {project.root / 'pyproject.toml'} failed: "
                f"{proc.stderr.strip()[-1500:] or proc.stdout.strip()[-1500:]}",
                hint="check that its dependencies resolve; uv reads the package index "
                "(UV_INDEX_URL / UV_DEFAULT_INDEX name a mirror)",
                subject=str(project.root),
            )
        body = (work / "locked.txt").read_text(encoding="utf-8")
    header = (
        f"# crank:lock python>={PYTHON_VERSIONS[0]} (crank lock: uv pip compile --universal "
        "--generate-hashes)\n"
        "# Do not edit: run `crank lock` (crank build does when a requirement of pyproject.toml,\n"
        "# crank or the image is not met). crank and the worker come from their own wheels.\n"
    )
    target = project.root / LOCK_FILE
    target.write_text(header + body, encoding="utf-8")
    return target


@dataclass(frozen=True)
class LockedRequirement:
    name: str
    version: str
    marker: str
    hashes: tuple[str, ...]

    @property
    def line(self) -> str:
        hashes = " ".join(f"--hash={h}" for h in self.hashes)
        return f"{self.name}=={self.version} {hashes}"


def parse_lock(text: str) -> list[LockedRequirement]:
    """The requirements of a lock in pip's format (``name==version ; marker --hash=...``)."""
    from packaging.requirements import InvalidRequirement, Requirement

    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line and not pending:
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    if pending.strip():
        logical.append(pending)
    found = []
    for entry in logical:
        spec, *hash_parts = entry.split("--hash=")
        try:
            req = Requirement(spec.strip())
        except InvalidRequirement as exc:
            raise GenerateError(
                f"{LOCK_FILE}: cannot read {spec.strip()!r} ({exc})",
                hint="regenerate it with `crank lock`",
            ) from None
        pins = [s for s in req.specifier if s.operator == "=="]
        if len(pins) != 1 or not hash_parts:
            raise GenerateError(
                f"{LOCK_FILE}: {spec.strip()!r} is not pinned with == and hashes",
                hint="regenerate it with `crank lock`",
            )
        found.append(
            LockedRequirement(
                req.name,
                pins[0].version,
                str(req.marker) if req.marker else "",
                tuple(h.strip() for h in hash_parts),
            )
        )
    return found


def lock_changes(
    before: Sequence[LockedRequirement], after: Sequence[LockedRequirement]
) -> list[str]:
    """What locking again changed, one line per package: ``+ name version`` (added),
    ``- name version`` (removed), ``~ name old -> new`` (another version)."""
    from packaging.utils import canonicalize_name

    def versions(lock: Sequence[LockedRequirement]) -> dict[str, str]:
        found: dict[str, set[str]] = {}
        for r in lock:
            found.setdefault(canonicalize_name(r.name), set()).add(r.version)
        return {name: ", ".join(sorted(v)) for name, v in found.items()}

    old, new = versions(before), versions(after)
    lines = []
    for name in sorted(old.keys() | new.keys()):
        if name not in new:
            lines.append(f"- {name} {old[name]}")
        elif name not in old:
            lines.append(f"+ {name} {new[name]}")
        elif old[name] != new[name]:
            lines.append(f"~ {name} {old[name]} -> {new[name]}")
    return lines


def _may_apply(requirement: LockedRequirement, python: str, machine: str) -> bool:
    """Whether a requirement's marker can hold on Linux/CPython ``python`` on ``machine``
    (any patch release: both ends of the minor version are tried)."""
    if not requirement.marker:
        return True
    from packaging.markers import Marker

    marker = Marker(requirement.marker)
    base = {
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "platform_machine": machine,
        "python_version": python,
    }
    return any(
        marker.evaluate({**base, "python_full_version": f"{python}.{patch}"}) for patch in (0, 99)
    )


def platform_tags(machine: str) -> list[str]:
    """pip ``--platform`` values for glibc Linux on ``machine``, newest first."""
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(MAX_GLIBC_MINOR, 16, -1)]
    return [*tags, f"manylinux2014_{machine}", f"manylinux2010_{machine}", f"manylinux1_{machine}"]


def download_wheels(lock: Path, dest: Path, *, machine: str, pythons: Sequence[str]) -> list[Path]:
    """Download every locked wheel for CPython ``pythons`` on Linux/``machine`` into
    ``dest``, each checked against the lock's hashes; returns the files."""
    requirements = parse_lock(lock.read_text(encoding="utf-8"))
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="crank-wheels-") as tmp:
        for python in pythons:
            wanted = [r for r in requirements if _may_apply(r, python, machine)]
            if not wanted:
                continue
            reqfile = Path(tmp) / f"py{python}.txt"
            reqfile.write_text("".join(r.line + "\n" for r in wanted), encoding="utf-8")
            abi = "cp" + python.replace(".", "")
            argv = [
                sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                "--require-hashes", "--only-binary=:all:", "--dest", str(dest),
                "--implementation", "cp", "--python-version", python,
                "--abi", abi, "--abi", "abi3", "--abi", "none",
                *[arg for tag in platform_tags(machine) for arg in ("--platform", tag)],
                "-r", str(reqfile),
            ]  # fmt: skip
            proc = subprocess.run(argv, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise GenerateError(
                    f"downloading the locked wheels for Python {python} ({machine}) failed: "
                    f"{proc.stderr.strip()[-1500:]}",
                    hint="every locked package needs a wheel for Linux (manylinux); pip "
                    "reads the package index (PIP_INDEX_URL / PIP_FIND_LINKS for a mirror)",
                    subject=str(lock),
                )
    return sorted(dest.glob("*.whl"))
