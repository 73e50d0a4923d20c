"""Checkers for programs on PATH (``exe:pandoc>=2.17``) and network services.

An executable is *present* when it is on PATH and runs. Many working programs
do not take ``--version`` (``java -version``, ``ffmpeg -version``) and exit
non-zero on it: that is still a program that runs. It is *broken* only when it
cannot run at all: it cannot be executed, is killed by a signal, exits 126/127
(the loader or a wrapper could not start it: a missing shared library or
interpreter), or hangs. Its version is read only when a constraint asks for
one, trying ``--version``, ``-version``, ``-V`` and ``version`` in turn, or the
spec's own version command (a manifest's ``version_command``).
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from crank.errors import UsageError
from crank.testing.dependencies import DependencyResult
from crank.testing.specs import unmet_constraint
from crank.testing.strict import current_policy

if TYPE_CHECKING:
    from crank.testing.specs import DependencySpec

VERSION_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 2.0
_DOTTED = re.compile(r"\d+(?:\.\d+)+")
_NUMBER = re.compile(r"\d+")


def parse_version(output: str) -> str | None:
    """The first dotted number in ``--version`` output (``pandoc 2.17.1.1`` -> ``2.17.1.1``),
    else the first number: a copyright year before it (``zip``) is not its version."""
    for pattern in (_DOTTED, _NUMBER):
        match = pattern.search(output)
        if match is not None:
            return match.group(0)
    return None


def _tail(text: str, lines: int = 3) -> str:
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept)


def run_tool(
    argv: list[str], timeout: float = VERSION_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        errors="replace",
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )


def exit_description(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


#: tried in turn to read a version, when a constraint asks for one.
VERSION_FLAGS = ("--version", "-version", "-V", "version")
#: exit statuses of a program that could not start: 126 found but not executable,
#: 127 a missing interpreter or shared library (the dynamic loader's status).
CANNOT_START = frozenset({126, 127})


def _cannot_run(command: str, proc: subprocess.CompletedProcess[str]) -> str | None:
    """Why ``proc`` shows a program that cannot run at all (None: it ran)."""
    if proc.returncode < 0 or proc.returncode in CANNOT_START:
        output = _tail(proc.stderr or proc.stdout)
        detail = f"`{command}` {exit_description(proc.returncode)}"
        return f"{detail}: {output}" if output else detail
    return None


def _run_probe(
    spec: DependencySpec, argv: list[str], reinstall: str
) -> subprocess.CompletedProcess[str] | DependencyResult:
    """Run ``argv``; a result when the program cannot run at all, else what it did."""
    command = " ".join(argv)
    try:
        proc = run_tool(argv)
    except subprocess.TimeoutExpired as exc:
        return DependencyResult.failing(
            spec,
            f"`{command}` did not finish within {VERSION_TIMEOUT_S:g} s",
            error=exc,
            hint=reinstall,
        )
    except OSError as exc:
        return DependencyResult.failing(
            spec, f"`{command}` cannot run: {exc}", error=exc, hint=reinstall
        )
    cannot = _cannot_run(command, proc)
    if cannot is not None:
        return DependencyResult.failing(
            spec,
            cannot,
            error=f"{cannot}\n{proc.stderr or proc.stdout}".rstrip(),
            hint=reinstall,
        )
    return proc


def _declared_version_command(name: str) -> tuple[str, ...] | None:
    """The ``version_command`` a manifest of the project under test gives ``name``."""

    policy = current_policy()
    if policy is None:
        return None
    try:
        return policy.version_command(name)
    except UsageError:  # an unreadable manifest: strict mode reports it where it matters
        return None


def check_executable(spec: DependencySpec) -> DependencyResult:
    name = spec.target or spec.name
    hint = f"apt-get install {name}"
    reinstall = f"apt-get install --reinstall {name}"
    path = shutil.which(name)
    if path is None:
        return DependencyResult.missing(spec, f"executable {name!r} is not on PATH", hint=hint)
    if spec.constraint is None:
        # Only whether it runs: one harmless call; its exit status does not matter.
        probe = _run_probe(spec, [path, "--version"], reinstall)
        if isinstance(probe, DependencyResult):
            return probe
        return DependencyResult.found(spec, reason=f"{path} runs")

    custom = spec.version_command or _declared_version_command(name)
    if custom and shutil.which(custom[0]) is None:
        # the command given for the version is wrong, not the program: fails all the same
        return DependencyResult.failing(
            spec,
            f"its version command `{' '.join(custom)}` cannot run: {custom[0]!r} is not on PATH",
            error=f"{custom[0]!r} is not on PATH",
            hint=f"correct the version command given for {name} (version_command in the "
            "manifest's system dependency, or ensure_dependency's version_command=)",
        )
    commands = [list(custom)] if custom else [[path, flag] for flag in VERSION_FLAGS]
    version = None
    for argv in commands:
        probe = _run_probe(spec, argv, reinstall)
        if isinstance(probe, DependencyResult):
            return probe
        if probe.returncode == 0:
            version = parse_version(probe.stdout + "\n" + probe.stderr)
            if version is not None:
                break
    if version is None:
        tried = ", ".join(f"`{' '.join(argv)}`" for argv in commands)
        return DependencyResult.missing(
            spec,
            f"{name} runs, but {tried} printed no version, so {spec.constraint} cannot be checked",
            hint=f"give the command that prints its version: version_command in the "
            f"manifest's system dependency, or ensure_dependency({spec.raw!r}, "
            "version_command=...)",
        )
    unmet = unmet_constraint(name, version, spec.constraint)
    if unmet is not None:
        return DependencyResult.missing(
            spec, unmet, hint=f"{hint}; {name}{spec.constraint} is needed", version=version
        )
    return DependencyResult.found(spec, version=version, reason=f"{path} {version}")


# --- services ------------------------------------------------------------------


def _address(spec: DependencySpec, default_port: int) -> tuple[str, int, str | None, str | None]:
    try:
        parts = urlsplit(spec.url or spec.raw)
        port = parts.port or default_port
    except ValueError as exc:  # a port that is no number, an unclosed [IPv6 ...
        raise UsageError(
            f"dependency spec {spec.name!r} is not a valid URL: {exc}",
            hint=f"write it like {_url_example(spec.kind)}",
            subject=spec.name,
        ) from None
    host = parts.hostname or "127.0.0.1"
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return host, port, user, password


def _url_example(kind: str) -> str:
    return "redis://127.0.0.1:6379" if kind == "redis" else f"{kind}://127.0.0.1:5432"


def _resp(*args: str) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n") and len(data) < 512:
        chunk = sock.recv(512)
        if not chunk:
            break
        data += chunk
    return data


def check_redis(spec: DependencySpec) -> DependencyResult:
    """``redis://[:password@]host:port``: connect and PING (AUTH first when a password is given)."""
    host, port, user, password = _address(spec, 6379)
    where = f"{host}:{port}"
    hint = f"start Redis: redis-server --bind {host} --port {port} (apt-get install redis-server)"
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S) as sock:
            if password is not None:
                sock.sendall(_resp("AUTH", user, password) if user else _resp("AUTH", password))
                auth = _read_line(sock)
                if not auth.startswith(b"+OK"):
                    return DependencyResult.failing(
                        spec,
                        f"Redis at {where} refused AUTH: {auth.decode(errors='replace').strip()}",
                        error=auth.decode(errors="replace").strip(),
                        hint="check the password in the URL",
                    )
            sock.sendall(_resp("PING"))
            reply = _read_line(sock)
    except OSError as exc:
        return DependencyResult.missing(spec, f"nothing answers at {where}: {exc}", hint=hint)
    text = reply.decode(errors="replace").strip()
    if reply.startswith(b"+PONG"):
        return DependencyResult.found(spec, reason=f"Redis at {where} answers PING")
    if reply.startswith(b"-NOAUTH"):
        return DependencyResult.failing(
            spec,
            f"Redis at {where} requires a password: {text}",
            error=text,
            hint=f"put it in the URL: redis://:PASSWORD@{where}",
        )
    return DependencyResult.failing(
        spec,
        f"something listens at {where} but does not answer PING like Redis: {text[:120]!r}",
        error=text,
        hint=f"check that {where} is a Redis server",
    )


def check_tcp(spec: DependencySpec) -> DependencyResult:
    """``tcp://host:port``: something accepts connections there."""
    host, port, _, _ = _address(spec, 0)
    where = f"{host}:{port}"
    if not port:  # the spec's mistake, not a broken service
        raise UsageError(
            f"dependency spec {spec.name!r} names no port",
            hint=f"write it like {_url_example('tcp')}",
            subject=spec.name,
        )
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        return DependencyResult.missing(
            spec,
            f"nothing accepts connections at {where}: {exc}",
            hint=f"start the service on {where}",
        )
    return DependencyResult.found(spec, reason=f"{where} accepts connections")
