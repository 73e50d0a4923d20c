"""The docs harness itself: what it reads from a page, and that a wrong page fails."""

from __future__ import annotations

import os
import textwrap
from typing import TYPE_CHECKING

import pytest

from .harness import PYTHON, SHELL_LANGUAGES, Command, DocFailure, Reader, parse_blocks

if TYPE_CHECKING:
    from pathlib import Path

PAGE = textwrap.dedent(
    """\
    # A page

    ```bash
    mkdir -p work && cd work
    export GREETING=hi
    ```

    <!-- docs-test: output -->
    ```console
    $ echo "$GREETING from $(basename "$PWD")"
    hi from work
    $ printf 'a\\nb\\n'
    a
    b
    ```

    <!-- docs-test: 2=skip (do not); 1=background, ready http://127.0.0.1:8080/ -->
    ```bash
    python3 ../serve.py --port 8080
    sudo rm -rf /
    ```

    ```python
    print("not a shell block")
    ```

    <!-- docs-test: needs docker -->
    ```bash
    docker run --rm -p 8081:8080 demo
    ```

    <!-- docs-test: skip (CI itself) -->
    ```sh
    nox -s ci
    ```
    """
)


def test_blocks_commands_and_directives_are_read() -> None:
    blocks = parse_blocks(PAGE)
    assert [(b.line, b.language, b.skip, b.check_output, sorted(b.needs)) for b in blocks] == [
        (3, "bash", None, False, []),
        (9, "console", None, True, []),
        (18, "bash", None, False, []),
        (28, "bash", None, False, ["docker"]),
        (33, "sh", "(CI itself)", False, []),
    ]
    assert blocks[1].commands == (
        Command('echo "$GREETING from $(basename "$PWD")"', ("hi from work",)),
        Command("printf 'a\\nb\\n'", ("a", "b")),
    )
    server, dangerous = blocks[2].commands
    assert (server.background, server.ready, server.skip) == (
        True,
        "http://127.0.0.1:8080/",
        None,
    )
    assert (dangerous.background, dangerous.skip) == (False, "(do not)")


def test_continued_lines_are_one_command() -> None:
    (block,) = parse_blocks("```bash\ncurl -s x \\\n  -d y\necho done\n```\n")
    assert [c.text for c in block.commands] == ["curl -s x \\\n  -d y", "echo done"]


def test_the_pages_ports_are_mapped_to_free_ones(tmp_path: Path) -> None:
    reader = Reader(tmp_path, dict(os.environ), "page.md")
    text = reader.rewrite(
        "crank run && curl localhost:8080/x 127.0.0.1:8081 && docker run -p 8081:8080 i"
    )
    web, other = reader.port(8080), reader.port(8081)
    assert web != other and 8080 not in (web, other)
    assert text == (
        f"crank run --port {web} && curl localhost:{web}/x 127.0.0.1:{other} && "
        f"docker run -p {other}:8080 i"
    )
    assert reader.rewrite("crank run --port 8080") == f"crank run --port {web}"
    redis = reader.port(6379)
    assert reader.rewrite('connect("redis://127.0.0.1:6379/0")') == (
        f'connect("redis://127.0.0.1:{redis}/0")'
    )


SERVER = """\
import argparse
import http.server

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int)
port = parser.parse_args().port
http.server.HTTPServer(("127.0.0.1", port), http.server.SimpleHTTPRequestHandler).serve_forever()
"""


def test_a_page_runs_with_its_directory_exports_and_servers(tmp_path: Path) -> None:
    (tmp_path / "serve.py").write_text(SERVER)
    reader = Reader(tmp_path, dict(os.environ), "page.md", missing={"docker": "not here"})
    reader.timeout_s = 120
    try:
        reader.run_page(parse_blocks(PAGE))
        assert reader.cwd == tmp_path / "work"
        assert reader.env["GREETING"] == "hi"
        (_, server, _) = reader.servers[0]
        assert server.poll() is None  # still serving until the end
    finally:
        reader.stop_servers()
    assert server.poll() is not None
    assert "# page.md:28: not run (not here)" in reader.transcript
    assert "# page.md:33: skipped ((CI itself))" in reader.transcript


def test_a_command_that_fails_fails_the_page(tmp_path: Path) -> None:
    reader = Reader(tmp_path, dict(os.environ), "page.md")
    with pytest.raises(DocFailure, match=r"page\.md:1: the block failed \(exit 3\)"):
        reader.run_page(parse_blocks("```bash\ntrue\n(exit 3)\necho never\n```\n"))


def test_output_that_differs_from_the_page_fails_it(tmp_path: Path) -> None:
    reader = Reader(tmp_path, dict(os.environ), "page.md")
    page = "<!-- docs-test: output -->\n```console\n$ echo 41\n42\n```\n"
    with pytest.raises(DocFailure, match="printed\n41\n--- the page shows ---\n42"):
        reader.run_page(parse_blocks(page))


def test_a_server_that_exits_before_it_is_ready_fails_the_page(tmp_path: Path) -> None:
    reader = Reader(tmp_path, dict(os.environ), "page.md", timeout_s=120)
    page = (
        "<!-- docs-test: background, ready http://127.0.0.1:8080/ -->\n"
        "```bash\necho starting; exit 4\n```\n"
    )
    with pytest.raises(DocFailure, match="exited with 4 before"):
        reader.run_page(parse_blocks(page))
    reader.stop_servers()


PYTHON_PAGE = textwrap.dedent(
    """\
    <!-- docs-test: output -->
    ```python
    import os
    print("in", os.path.basename(os.getcwd()), "to 127.0.0.1:6379")
    ```

    prints

    ```text
    in work to 127.0.0.1:6379
    ```

    ```python
    print(os.getcwd())  # each block is a whole program: this one did not import os
    ```
    """
)


def test_python_blocks_are_read_only_when_asked_for_with_what_they_print() -> None:
    assert parse_blocks(PYTHON_PAGE) == []
    shows, fragment = parse_blocks(PYTHON_PAGE, SHELL_LANGUAGES | {PYTHON})
    assert (shows.line, shows.language, shows.check_output) == (2, "python", True)
    assert shows.commands[0].expected == ("in work to 127.0.0.1:6379",)
    assert shows.commands[0].text.startswith("import os\n")
    assert (fragment.check_output, fragment.commands[0].expected) == (False, ())
    with pytest.raises(ValueError, match="line 2: an `output` python block needs a text block"):
        parse_blocks("<!-- docs-test: output -->\n```python\nprint(1)\n```\n", frozenset({PYTHON}))


def test_a_python_block_runs_alone_and_what_it_prints_is_compared(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    reader = Reader(tmp_path / "work", dict(os.environ), "page.md", timeout_s=120)
    redis = reader.port(6379)
    shows, fragment = parse_blocks(PYTHON_PAGE, SHELL_LANGUAGES | {PYTHON})
    reader.run_block(shows)  # the page's port, in the program and in what it shows, mapped
    assert f"in work to 127.0.0.1:{redis}" in reader.transcript
    with pytest.raises(DocFailure, match=r"page\.md:13: the python block failed \(exit 1\)"):
        reader.run_block(fragment)
    wrong = PYTHON_PAGE.replace("in work to", "in play to")
    shown = r"printed\nin work to .*\n--- the page shows ---\nin play"
    with pytest.raises(DocFailure, match=shown):
        reader.run_block(parse_blocks(wrong, frozenset({PYTHON}))[0])
