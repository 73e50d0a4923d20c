"""Safe YAML loading that keeps the line and column of every node.

The document is composed into PyYAML nodes (no Python object construction, so no
code execution and no alias expansion), then turned into plain data while a
budget bounds the work: a billion-laughs alias bomb, a huge file or binary data
each end in a :class:`~crank.errors.ManifestError` with a position, quickly.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from crank.errors import ManifestError
from crank.manifest.findings import Finding, quoted

#: Manifests are small; anything bigger is a mistake (or an attack).
MAX_BYTES = 1024 * 1024
#: Nodes visited while building data, aliases counted each time they are used.
MAX_NODES = 200_000
#: Nesting deeper than this is not a manifest (JSON Schemas in one nest ~20 levels).
MAX_DEPTH = 100
LOAD_RULE = "CRK001"

Position = tuple[int, int]


@dataclass
class LoadedDocument:
    """Plain data plus the position (1-based line, col) of every JSON path in it."""

    data: Any
    file: str
    positions: dict[tuple[str | int, ...], Position] = field(default_factory=dict)
    #: positions of mapping *keys*, for findings about a key itself (unknown field).
    key_positions: dict[tuple[str | int, ...], Position] = field(default_factory=dict)
    text: str = ""
    #: how each unquoted value YAML read as a boolean or number was written (``yes``,
    #: ``1.10``), for findings that expected a string there
    spellings: dict[tuple[str | int, ...], str] = field(default_factory=dict)

    def position(self, path: tuple[str | int, ...], *, key: bool = False) -> Position:
        """Position of ``path``, or of its nearest ancestor that has one."""
        table = self.key_positions if key else self.positions
        p = tuple(path)
        while p:
            if p in table:
                return table[p]
            if key and p in self.positions:
                return self.positions[p]
            p = p[:-1]
        return self.positions.get((), (1, 1))


_RESOLVERS = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()
}


class _Loader(yaml.SafeLoader):
    """SafeLoader whose dates stay strings: the schema checks them as ``format: date``."""

    yaml_implicit_resolvers = _RESOLVERS


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader that refuses a key given twice in one mapping, at the second
    (a :class:`yaml.constructor.ConstructorError`), for YAML files other than manifests
    that people edit by hand: PyYAML keeps the last value silently. Keys copied by a merge
    key (``<<: *base``) may be overridden, as YAML allows."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(
                key_node, yaml.ScalarNode
            ):
                continue
            key = self.construct_object(key_node)
            if key in first:
                line = first[key].start_mark.line + 1
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"duplicate key {quoted(key)} (first defined at line {line})",
                    key_node.start_mark,
                )
            first[key] = key_node
        return super().construct_mapping(node, deep=deep)


#: libyaml's parser when PyYAML was built with it: several times faster than the
#: pure-Python one, with the same nodes and marks. Its error messages are terser,
#: so a document it rejects is parsed again by the pure-Python loader to explain why.
_FastLoader: type[yaml.SafeLoader] = _Loader
if getattr(yaml, "__with_libyaml__", False):

    class _CLoader(yaml.CSafeLoader):
        yaml_implicit_resolvers = _RESOLVERS

    _FastLoader = _CLoader  # type: ignore[assignment]


def _fail(
    file: str,
    line: int,
    col: int,
    message: str,
    hint: str | None = None,
    path: tuple[str | int, ...] = (),
) -> ManifestError:
    finding = Finding(
        file=file, line=line, col=col, rule=LOAD_RULE, message=message, path=path, hint=hint
    )
    return ManifestError(
        f"{file}:{line}:{col} {message}", hint=hint, subject=file, findings=(finding,)
    )


def _line_col(text: bytes, offset: int) -> Position:
    before = text[:offset]
    line = before.count(b"\n") + 1
    col = offset - (before.rfind(b"\n") + 1) + 1
    return line, col


def _unreadable(file: str, why: str, hint: str) -> ManifestError:
    """The error of a manifest file that cannot be read at all, with the finding ``crank
    lint`` reports for it (at 1:1: there is no text to point into)."""
    finding = Finding(file=file, line=1, col=1, rule=LOAD_RULE, message=why, hint=hint)
    return ManifestError(f"{file}: {why}", hint=hint, subject=file, findings=(finding,))


def _why_unreadable(path: Path, exc: OSError) -> tuple[str, str]:
    """What to say (and hint) about a manifest file ``exc`` kept from being read."""
    if isinstance(exc, FileNotFoundError) and path.is_symlink():
        return (
            f"is a symbolic link to {path.readlink()}, which does not exist",
            "point the link at a manifest, or remove it",
        )
    if isinstance(exc, FileNotFoundError):
        return "no such file", "check the path"
    if isinstance(exc, PermissionError):
        return (
            f"cannot read: {exc.strerror}",
            "make the file readable by this user (e.g. chmod a+r), or run as one who can read it",
        )
    return f"cannot read: {exc.strerror or exc}", "check that the path is a readable file"


def read_manifest_text(path: Path, *, max_bytes: int = MAX_BYTES) -> str:
    """Read a manifest as text, refusing huge, binary and non-UTF-8 files.

    A file that cannot be read (missing, a dangling link, a folder, no permission) is a
    :class:`ManifestError` whose finding says why, as for one that cannot be parsed.
    """
    file = str(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise _unreadable(file, *_why_unreadable(path, exc)) from None
    if path.is_dir():
        raise _unreadable(
            file,
            "is a directory, not a manifest file",
            "give the crank.yaml inside it, or the path of a manifest file",
        )
    if size > max_bytes:
        raise _fail(
            file,
            1,
            1,
            f"file is {size:,} bytes; manifests are limited to {max_bytes:,} bytes",
            "a crank.yaml describes capabilities; keep large schemas and data out of it",
        )
    try:
        # read at most one byte more than allowed: a FIFO or /dev/zero has no size
        with path.open("rb") as fh:
            raw = fh.read(max_bytes + 1)
    except OSError as exc:
        raise _unreadable(file, *_why_unreadable(path, exc)) from None
    if len(raw) > max_bytes:
        raise _fail(
            file,
            1,
            1,
            f"file is larger than {max_bytes:,} bytes, the limit for manifests",
            "a crank.yaml describes capabilities; keep large schemas and data out of it",
        )
    return decode_manifest_bytes(raw, file)


#: Byte order marks of the encodings an editor may save text in, longest first.
_OTHER_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)


def decode_manifest_bytes(raw: bytes, file: str) -> str:
    for bom, encoding in _OTHER_BOMS:
        if raw.startswith(bom):
            # its NUL bytes would be reported as binary data
            raise _fail(
                file,
                1,
                1,
                f"file is {encoding} text; manifests are UTF-8",
                "save the manifest as UTF-8 (an editor's 'Unicode' is often UTF-16)",
            )
    nul = raw.find(b"\x00")
    if nul != -1:
        line, col = _line_col(raw, nul)
        raise _fail(
            file,
            line,
            col,
            "file contains binary data (a NUL byte), not YAML text",
            "point crank at the crank.yaml text file",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _line_col(raw, exc.start)
        raise _fail(
            file,
            line,
            col,
            f"file is not valid UTF-8 (byte 0x{raw[exc.start]:02x})",
            "save the manifest as UTF-8",
        ) from None
    return text.removeprefix("\ufeff")


_TAB_RE = re.compile(r"found character '\\t'|found a tab character")


def _check_depth(text: str, file: str, loader: type[yaml.SafeLoader]) -> None:
    """Refuse nesting deeper than MAX_DEPTH at the first node past it, before composing.

    The event stream is produced iteratively by both parsers, so this never recurses,
    whatever the document. Composing is recursive: libyaml builds without a nesting
    limit overflow the C stack on a deep document, builds with one (PyYAML 6.0.4's)
    refuse past 1,000 levels, and the pure-Python composer hits RecursionError.
    """
    depth = 0
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            # the document's root collection is depth 0, as in _check_expansion
            if depth - 1 > MAX_DEPTH:
                line, col = (
                    (mark.line + 1, mark.column + 1) if (mark := event.start_mark) else (1, 1)
                )
                raise _fail(
                    file,
                    line,
                    col,
                    f"nested more than {MAX_DEPTH} levels deep",
                    "a manifest is shallow; flatten this structure",
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _compose(text: str, file: str) -> yaml.Node | None:
    try:
        _check_depth(text, file, _FastLoader)
        return yaml.compose(text, Loader=_FastLoader)
    except yaml.YAMLError:
        if _FastLoader is _Loader:
            raise
    # libyaml refused the text (a syntax error, or its own nesting limit, which it
    # reaches while scanning ahead): the pure-Python parser has no nesting limit,
    # finds a too-deep node where it is, and words syntax errors better.
    _check_depth(text, file, _Loader)
    return yaml.compose(text, Loader=_Loader)


def describe_yaml_error(exc: yaml.MarkedYAMLError) -> tuple[int, int, str, str]:
    """(line, col, problem, hint) of a YAML syntax error, in one line each: PyYAML's own
    text spans several lines and quotes the document back (``in "<unicode string>"``)."""
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = exc.problem or "invalid YAML"
    hint = "fix the YAML syntax at this position"
    if _TAB_RE.search(str(exc)):
        problem = "tab character used for indentation"
        hint = "YAML indents with spaces only; replace the tab with spaces"
    elif problem.startswith("duplicate key "):
        hint = "YAML keeps only one value per key; remove or rename one of them"
    elif "expected a single document" in str(exc):
        problem = "more than one YAML document (a second '---')"
        hint = "the file is a single document; remove the extra '---' and what follows"
    return line, col, problem, hint


def parse_yaml(text: str, file: str) -> LoadedDocument:
    """Compose one YAML document and build plain data with positions."""
    try:
        root = _compose(text, file)
    except yaml.MarkedYAMLError as exc:
        line, col, problem, hint = describe_yaml_error(exc)
        if Path(file).suffix.lower() not in ("", ".yaml", ".yml") and not file.startswith("<"):
            # `crank lint src/demo/worker.py`: the YAML parser's complaint alone misleads
            hint = (
                f"is this a manifest? a {Path(file).suffix} file is read as YAML here; "
                "give crank.yaml or *.crank.yaml files (or their folder)"
            )
        raise _fail(file, line, col, f"YAML syntax error: {problem}", hint) from None
    except yaml.YAMLError as exc:
        raise _fail(file, 1, 1, f"YAML error: {exc}", "fix the YAML syntax") from None

    if root is None or (
        # `---` alone, or `~`: a document whose only content is null
        isinstance(root, yaml.ScalarNode)
        and root.tag == "tag:yaml.org,2002:null"
        and root.value in ("", "~", "null", "Null", "NULL")
    ):
        raise _fail(
            file,
            1,
            1,
            "file is empty (no YAML content)",
            "start from `crank new-worker` or the example in docs/manifest.md",
        )
    doc = LoadedDocument(data=None, file=file, text=text)
    if not isinstance(root, yaml.MappingNode):
        line, col = root.start_mark.line + 1, root.start_mark.column + 1
        kind = "a list" if isinstance(root, yaml.SequenceNode) else "a single value"
        raise _fail(
            file,
            line,
            col,
            f"the document is {kind}, expected a mapping of fields",
            "a manifest starts with `apiVersion: crank.dev/v1`",
        )
    _check_expansion(root, file)
    builder = _Builder(doc)
    doc.data = builder.build(root, ())
    return doc


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root: yaml.Node, file: str) -> None:
    """Refuse recursive aliases, deep nesting and alias bombs before building anything.

    Sizes are computed once per distinct node, so a bomb costs time in proportion
    to its text, not to its expansion.
    """
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()

    def at(node: yaml.Node) -> tuple[int, int]:
        return node.start_mark.line + 1, node.start_mark.column + 1

    def size(node: yaml.Node, depth: int) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in in_progress:
            raise _fail(
                file,
                *at(node),
                "recursive alias: a node contains itself",
                "an alias (*name) must not point at a node that encloses it",
            )
        if depth > MAX_DEPTH:
            raise _fail(
                file,
                *at(node),
                f"nested more than {MAX_DEPTH} levels deep",
                "a manifest is shallow; flatten this structure",
            )
        in_progress.add(key)
        total = 1 + sum(size(child, depth + 1) for child in _children(node))
        in_progress.discard(key)
        sizes[key] = total
        return total

    if size(root, 0) <= MAX_NODES:
        return
    # find the node where a document-order build would pass the limit
    seen = 0
    node = root
    while True:
        seen += 1
        for child in _children(node):
            if seen + sizes[id(child)] <= MAX_NODES:
                seen += sizes[id(child)]
                continue
            node = child
            break
        else:  # pragma: no cover - unreachable: some child must overflow
            break
        if not _children(node):
            break
    raise _fail(
        file,
        *at(node),
        f"document expands to more than {MAX_NODES:,} nodes (an alias bomb?)",
        "remove the nested anchors/aliases (&name / *name)",
    )


_PLAIN_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})
_SCALAR_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null")
)


class _Builder:
    def __init__(self, doc: LoadedDocument) -> None:
        self.doc = doc
        self.visited = 0
        self.constructor = _Loader("")
        #: pairs copied by merge keys, per mapping node already flattened
        self.merged: dict[int, int] = {}

    def build(self, node: yaml.Node, path: tuple[str | int, ...]) -> Any:
        self.visited += 1
        if self.visited > MAX_NODES:
            line, col = node.start_mark.line + 1, node.start_mark.column + 1
            raise _fail(
                self.doc.file,
                line,
                col,
                f"document expands to more than {MAX_NODES:,} nodes (an alias bomb?)",
                "remove the nested anchors/aliases (&name / *name)",
            )
        self.doc.positions.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and node.tag not in _PLAIN_TAGS:
            line, col = node.start_mark.line + 1, node.start_mark.column + 1
            raise _fail(
                self.doc.file,
                line,
                col,
                f"unsupported YAML tag {quoted(node.tag)}",
                "manifests hold plain mappings, lists and scalars; remove the tag",
                path,
            )
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            merged = self._flatten(node, path)
            # a merge key (``<<: *base``) puts the pairs it copies first: the node's own
            # keys override them, and an earlier merge source overrides a later one, so
            # only the last pair of each key is kept. Only the node's own pairs can be
            # duplicates of each other.
            last: dict[str, int] = {}
            for index, (key_node, _) in enumerate(node.value):
                last[self._key(key_node, path)] = index
            own: dict[str, int] = {}  # key -> line of the node's own pair
            for index, (key_node, value_node) in enumerate(node.value):
                kline, kcol = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                key = self._key(key_node, path)
                if index >= merged and key in own:
                    raise _fail(
                        self.doc.file,
                        kline,
                        kcol,
                        f"duplicate key {quoted(key)} (first defined at line {own[key]})",
                        "YAML keeps only one value per key; remove or rename one of them",
                        (*path, key),
                    )
                if index >= merged:
                    own[key] = kline
                if last[key] != index:
                    continue  # overridden by a later pair of the same key
                self.doc.key_positions[(*path, key)] = (kline, kcol)
                out[key] = self.build(value_node, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        if node.tag not in _SCALAR_TAGS:
            line, col = node.start_mark.line + 1, node.start_mark.column + 1
            raise _fail(
                self.doc.file,
                line,
                col,
                f"unsupported YAML tag {quoted(node.tag)}",
                "manifests hold plain mappings, lists and scalars; remove the tag",
                path,
            )
        value = self._scalar(node, path)
        if isinstance(value, bool | int | float) and isinstance(node, yaml.ScalarNode):
            self.doc.spellings[path] = node.value
        return value

    def _flatten(self, node: yaml.MappingNode, path: tuple[str | int, ...]) -> int:
        """Resolve the merge keys of ``node`` in place; the number of pairs they copied
        (they come first). A node met again through an alias is flattened already."""
        key = id(node)
        if key not in self.merged:
            merge_keys = [k for k, _ in node.value if k.tag == "tag:yaml.org,2002:merge"]
            own = len(node.value) - len(merge_keys)
            try:
                self.constructor.flatten_mapping(node)
            except yaml.MarkedYAMLError as exc:
                # at the `<<` itself: PyYAML points at the merged node, maybe far away
                mark = merge_keys[0].start_mark if merge_keys else node.start_mark
                problem = exc.problem or "invalid merge key"
                raise _fail(
                    self.doc.file,
                    mark.line + 1,
                    mark.column + 1,
                    f"cannot merge: {problem}",
                    "`<<:` takes an alias of a mapping (`<<: *base`) or a list of them",
                    path,
                ) from None
            self.merged[key] = len(node.value) - own
        return self.merged[key]

    def _key(self, node: yaml.Node, path: tuple[str | int, ...]) -> str:
        """A mapping key as text. A plain key YAML reads as a number or a boolean keeps
        its spelling: ``on:`` is the key 'on' and ``1.10:`` the key '1.10', not 'True'
        and '1.1'."""
        line, col = node.start_mark.line + 1, node.start_mark.column + 1
        if not isinstance(node, yaml.ScalarNode) or node.tag not in _SCALAR_TAGS:
            raise _fail(
                self.doc.file,
                line,
                col,
                "a mapping key must be a plain string",
                "use `name: value` pairs",
                path,
            )
        key = self._scalar(node, path)
        if isinstance(key, str):
            return key
        if isinstance(key, int | float | bool):
            return str(node.value)
        raise _fail(self.doc.file, line, col, "a mapping key must be a string", None, path)

    def _scalar(self, node: yaml.Node, path: tuple[str | int, ...]) -> Any:
        line, col = node.start_mark.line + 1, node.start_mark.column + 1
        try:
            return self.constructor.construct_object(node)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or "invalid value"
            raise _fail(
                self.doc.file, line, col, f"cannot read value: {problem}", None, path
            ) from None
        except ValueError:
            # Python refuses to convert an integer of more than sys.get_int_max_str_digits()
            # digits (a guard against quadratic time); its own words name a Python setting
            raise _fail(
                self.doc.file,
                line,
                col,
                "cannot read value: the number has more than "
                f"{sys.get_int_max_str_digits():,} digits",
                "no manifest field needs such a number; shorten it, or quote it to make "
                "it a string",
                path,
            ) from None


def load_document(path: Path | str) -> LoadedDocument:
    """Read and parse ``path``; every failure is a :class:`ManifestError` with a position."""
    p = Path(path)
    return parse_yaml(read_manifest_text(p), str(path))
