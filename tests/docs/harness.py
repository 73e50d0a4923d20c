"""Run the shell and Python blocks of a Markdown page the way a reader types them.

Each fenced block in ``bash``, ``sh`` or ``console`` is a step. In a ``bash``/``sh``
block every line is a command (a line ending in ``\\`` continues); in a ``console``
block, commands start with ``$ `` and the lines after one are its expected output.
A block runs as one bash script (``set -e``), so shell variables live for the block;
the working directory and exported variables carry over to the next block, as in
the reader's terminal (``cd demo``, ``. .venv/bin/activate``).

A ``python`` block (read only when the test asks ``parse_blocks`` for ``python``) is a
program a reader copies: it runs alone, as ``python FILE`` in the reader's directory
and environment, so it must hold its own imports. With ``output`` the next fenced
block of the page (a ``text`` block) is what it prints (stdout), compared line by line.

What the harness needs that the reader does not is written in an HTML comment right
above the block, invisible on the rendered page::

    <!-- docs-test: skip (why) -->            the block is not run
    <!-- docs-test: background, ready URL --> each command is a server: start it, go on
                                              once URL answers 200; stopped at the end
    <!-- docs-test: output -->                compare what each command prints (stdout)
                                              with the lines the console block shows (a
                                              python block: the text block after it)
    <!-- docs-test: needs docker -->          run only where the test provides it
    <!-- docs-test: 2=skip (why); 1=background, ready URL -->
                                              the same, for single commands (1-based)

The one rewrite: a page's ports (8080, 8081..., and Redis's 6379) are fixed, and tests
never bind fixed ports on a shared machine, so each port a page names is mapped to a
free one in ``localhost:N``, ``127.0.0.1:N``, ``--port N`` and ``-p N:`` (the host
side), and a ``crank run`` that names no port gets ``--port`` its mapped 8080. A test
that starts a server the page only names (a Redis) sets its port in ``Reader.ports``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ..ports import free_port

SHELL_LANGUAGES = frozenset({"bash", "sh", "console"})
PYTHON = "python"
_FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")
_DIRECTIVE = re.compile(r"<!--\s*docs-test:(?P<body>.*?)-->", re.DOTALL)
_PORT_USES = (
    (r"(localhost|127\.0\.0\.1):{port}\b", r"\g<1>:{new}"),
    (r"--port[ =]{port}\b", r"--port {new}"),
    (r"(-p\s+){port}:", r"\g<1>{new}:"),
)
DEFAULT_PORT = 8080
#: the ports a page may name: crank's (80xx) and Redis's default
_DOCUMENTED_PORT = re.compile(r"\b(80[0-9]{2}|6379)\b")


@dataclass(frozen=True)
class Command:
    """One command of a block, with what the page says it prints (console blocks)."""

    text: str
    expected: tuple[str, ...] = ()
    skip: str | None = None
    background: bool = False
    ready: str | None = None


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the opening fence
    language: str
    commands: tuple[Command, ...]
    skip: str | None = None
    check_output: bool = False
    needs: frozenset[str] = frozenset()


def _parse_directive(body: str) -> tuple[dict[str, str], dict[int, dict[str, str]]]:
    """``"output"`` -> block options; ``"2=skip (why); 1=background, ready URL"`` -> per command."""
    block: dict[str, str] = {}
    per_command: dict[int, dict[str, str]] = {}
    for part in (p.strip() for p in body.split(";")):
        if not part:
            continue
        target = block
        index, eq, rest = part.partition("=")
        if eq and index.strip().isdigit():
            target = per_command.setdefault(int(index), {})
            part = rest.strip()
        for option in (o.strip() for o in part.split(",")):
            word, _, value = option.partition(" ")
            target[word] = value.strip()
    return block, per_command


def _commands(language: str, lines: list[str]) -> list[Command]:
    commands: list[Command] = []
    if language == "console":
        current: str | None = None
        expected: list[str] = []
        for line in lines:
            if line.startswith("$ "):
                if current is not None:
                    commands.append(Command(current, tuple(expected)))
                current, expected = line[2:], []
            elif current is not None and current.endswith("\\"):
                current += "\n" + line
            elif current is not None:
                expected.append(line.rstrip())
        if current is not None:
            commands.append(Command(current, tuple(expected)))
        return commands
    pending = ""
    for line in lines:
        if not line.strip() and not pending:
            continue
        pending = f"{pending}\n{line}" if pending else line
        if not line.rstrip().endswith("\\"):
            commands.append(Command(pending))
            pending = ""
    if pending:
        commands.append(Command(pending))
    return commands


def _shown_output(lines: list[str], after: int, where: int) -> tuple[str, ...]:
    """The ``text`` block that follows line ``after``: what the python block above prints."""
    for i in range(after, len(lines)):
        fence = _FENCE.match(lines[i])
        if fence is None:
            continue
        if fence.group("lang") != "text":
            break
        end = i + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        return tuple(line.rstrip() for line in lines[i + 1 : end])
    raise ValueError(f"line {where}: an `output` python block needs a text block after it")


def parse_blocks(markdown: str, languages: frozenset[str] = SHELL_LANGUAGES) -> list[Block]:
    """The blocks of a page in ``languages`` (shell by default, ``python`` on request),
    with the harness directives above each."""
    lines = markdown.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        start = i
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        language = fence.group("lang")
        if language in languages:
            before = "\n".join(lines[max(0, start - 8) : start])
            found = list(_DIRECTIVE.finditer(before))
            # the directive must be the last thing above the fence (blank lines aside)
            directive = found[-1] if found and not before[found[-1].end() :].strip() else None
            options, per_command = (
                _parse_directive(directive.group("body")) if directive else ({}, {})
            )
            if language == PYTHON:
                source = "\n".join(lines[start + 1 : j]) + "\n"
                shown = _shown_output(lines, j + 1, start + 1) if "output" in options else ()
                found_commands = [Command(source, shown)]
            else:
                found_commands = _commands(language, lines[start + 1 : j])
            commands = []
            for n, command in enumerate(found_commands, 1):
                extra = per_command.get(n, {})
                commands.append(
                    Command(
                        command.text,
                        command.expected,
                        skip=extra.get("skip"),
                        background="background" in extra or "background" in options,
                        ready=extra.get("ready") or options.get("ready"),
                    )
                )
            blocks.append(
                Block(
                    line=start + 1,
                    language=language,
                    commands=tuple(commands),
                    skip=options.get("skip"),
                    check_output="output" in options,
                    needs=frozenset(options.get("needs", "").split()),
                )
            )
        i = j + 1
    return blocks


class DocFailure(AssertionError):
    """A documented command did not work as written."""


@dataclass
class Reader:
    """A reader's terminal: a working directory, exported variables, servers left running."""

    cwd: Path
    env: dict[str, str]
    page: str
    ports: dict[int, int] = field(default_factory=dict)
    servers: list[tuple[str, subprocess.Popen[bytes], Path]] = field(default_factory=list)
    transcript: list[str] = field(default_factory=list)
    timeout_s: float = 1800.0
    #: what this run cannot provide (``"docker"``) -> why; blocks that need it are skipped
    missing: dict[str, str] = field(default_factory=dict)

    def port(self, documented: int) -> int:
        if documented not in self.ports:
            self.ports[documented] = free_port()
        return self.ports[documented]

    def rewrite(self, text: str) -> str:
        """Map the page's ports to free ones (see the module doc)."""
        for documented in sorted({int(p) for p in _DOCUMENTED_PORT.findall(text)}):
            new = self.port(documented)
            for pattern, replacement in _PORT_USES:
                text = re.sub(pattern.format(port=documented), replacement.format(new=new), text)
        return re.sub(
            r"\bcrank run\b(?![^\n;&|]*--port)",
            f"crank run --port {self.port(DEFAULT_PORT)}",
            text,
        )

    def run_page(self, blocks: list[Block]) -> None:
        for block in blocks:
            if block.skip is not None:
                self.transcript.append(f"# {self.page}:{block.line}: skipped ({block.skip})")
                continue
            lacking = sorted(block.needs & set(self.missing))
            if lacking:
                why = "; ".join(self.missing[need] for need in lacking)
                self.transcript.append(f"# {self.page}:{block.line}: not run ({why})")
                continue
            self.run_block(block)

    def run_block(self, block: Block) -> None:
        where = f"{self.page}:{block.line}"
        if block.language == PYTHON:
            self._python(block.commands[0], block, where)
            return
        foreground: list[Command] = []
        for command in block.commands:
            if command.skip is not None:
                self.transcript.append(f"# {where}: skipped {command.text!r} ({command.skip})")
            elif command.background:
                if foreground:
                    self._script(foreground, block, where)
                    foreground = []
                self._serve(command, where)
            else:
                foreground.append(command)
        if foreground:
            self._script(foreground, block, where)

    # -- running ---------------------------------------------------------------------

    def _script(self, commands: list[Command], block: Block, where: str) -> None:
        """Run commands as one bash script; keep its final directory and exports."""
        with tempfile.TemporaryDirectory(prefix="docs-test-") as tmp:
            state = Path(tmp)
            parts = ["set -eo pipefail"]
            for n, command in enumerate(commands):
                text = self.rewrite(command.text)
                self.transcript.append(f"$ {text}")
                if block.check_output:
                    parts.append(f"{{\n{text}\n}} > {state / f'out{n}'}")
                else:
                    parts.append(text)
            parts.append(f"pwd > {state / 'cwd'}")
            parts.append(f"env -0 > {state / 'env'}")
            proc = self._execute(["bash", "-c", "\n".join(parts)])
            if proc.returncode != 0:
                outputs = "".join(
                    (state / f"out{n}").read_text(errors="replace")
                    for n in range(len(commands))
                    if (state / f"out{n}").exists()
                )
                raise DocFailure(
                    f"{where}: the block failed (exit {proc.returncode}):\n"
                    + "\n".join(self.rewrite(c.text) for c in commands)
                    + f"\n--- output ---\n{proc.stdout}{proc.stderr}{outputs}"
                )
            if block.check_output:
                for n, command in enumerate(commands):
                    got = (state / f"out{n}").read_text(errors="replace").rstrip("\n").splitlines()
                    self._compare(got, command, f"{where}: `{command.text}`")
            self.cwd = Path((state / "cwd").read_text().strip())
            self.env = _exports((state / "env").read_bytes())

    def _compare(self, printed: list[str], command: Command, what: str) -> None:
        """What ``command`` printed, line by line (trailing blanks aside), against the
        text block the page shows after it."""
        got = [line.rstrip() for line in printed]
        want = [self.rewrite(line) for line in command.expected]
        if got != want:
            raise DocFailure(
                f"{what} printed\n"
                + "\n".join(got)
                + "\n--- the page shows ---\n"
                + "\n".join(want)
            )

    def _execute(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` where the reader is (their folder, their environment); what it
        prints goes to the transcript."""
        proc = subprocess.run(
            argv,
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=self.timeout_s,
            check=False,
        )
        self.transcript.append((proc.stdout + proc.stderr).rstrip())
        return proc

    def _python(self, command: Command, block: Block, where: str) -> None:
        """Run a python block as the reader's ``python FILE``; compare what it prints."""
        source = self.rewrite(command.text)
        self.transcript.append(f"$ python example.py  # {where}\n{source.rstrip()}")
        with tempfile.TemporaryDirectory(prefix="docs-python-") as tmp:
            program = Path(tmp) / "example.py"
            program.write_text(source, encoding="utf-8")
            proc = self._execute(["python", str(program)])
        if proc.returncode != 0:
            raise DocFailure(
                f"{where}: the python block failed (exit {proc.returncode}):\n{source}"
                f"--- output ---\n{proc.stdout}{proc.stderr}"
            )
        if block.check_output:
            self._compare(
                proc.stdout.rstrip("\n").splitlines(), command, f"{where}: the python block"
            )

    def _serve(self, command: Command, where: str) -> None:
        text = self.rewrite(command.text)
        self.transcript.append(f"$ {text} &")
        log = Path(tempfile.mkstemp(prefix="docs-server-", suffix=".log")[1])
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                ["bash", "-c", text],
                cwd=self.cwd,
                env=self.env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # stopped as a group: `a && crank run` included
            )
        self.servers.append((text, proc, log))
        if command.ready is None:
            return
        url = self.rewrite(command.ready)
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DocFailure(
                    f"{where}: `{text}` exited with {proc.returncode} before {url} answered:\n"
                    + log.read_text(errors="replace")[-4000:]
                )
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(url, timeout=5) as reply,
            ):
                if reply.status == 200:
                    return
            time.sleep(0.5)
        raise DocFailure(f"{where}: {url} did not answer within {self.timeout_s:g} s")

    def stop_servers(self) -> None:
        for _, proc, _ in reversed(self.servers):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=30)
        self.servers.clear()


def _exports(raw: bytes) -> dict[str, str]:
    """``env -0`` output back into a mapping (``_`` is bash's last argument, not state)."""
    env: dict[str, str] = {}
    for item in raw.decode(errors="surrogateescape").split("\0"):
        name, eq, value = item.partition("=")
        if eq and name != "_":
            env[name] = value
    return env
