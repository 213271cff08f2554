"""Line-level edits of Rasa's YAML files that leave every untouched byte as it was.

The workbench never re-dumps a whole file: ruamel.yaml parses it (round-trip mode, which
records the line and column of every key and item), and an edit is a splice of whole lines
or of one scalar token at a known position. That way ``git diff`` shows exactly the lines a
trainer changed, whatever quoting, comments or blank lines the rest of the file has. After
each splice the caller re-parses the new text and compares its meaning with the expected
one (``summary``), so a splice in the wrong place can never reach the disk.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from crm_bridge.errors import Conflict


class BrokenFile(Conflict):
    """A data file is not valid YAML (fix it by hand; the workbench will not guess)."""


@dataclass(frozen=True)
class LineEdit:
    """Replace lines ``start:end`` (0-based, end exclusive) with ``new`` (an insert if equal)."""

    start: int
    end: int
    new: tuple[str, ...]


@dataclass(frozen=True)
class TokenEdit:
    """Replace ``length`` characters at ``line``/``col`` with ``new`` (one scalar)."""

    line: int
    col: int
    length: int
    new: str


Edit = LineEdit | TokenEdit


def split_lines(text: str) -> list[str]:
    """The text's lines with their line ends; only '\\n' ends a line."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def indent_of(line: str) -> int:
    """How many spaces the line starts with."""
    return len(line) - len(line.lstrip(" "))


def _is_blank(line: str) -> bool:
    return not line.strip()


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def parse_yaml(text: str, rel: str) -> Any:
    """Parse in round-trip mode (positions kept); ``BrokenFile`` if it is not YAML."""
    try:
        return YAML(typ="rt").load(text)
    except YAMLError as exc:
        raise BrokenFile(f"{rel} is not valid YAML; fix it by hand first ({exc}).") from exc


@dataclass
class YamlFile:
    """One YAML file as read: relative path, exact text, and its round-trip parse.

    Treat it as read-only: parses are shared between requests (see ``read``).
    """

    rel: str
    text: str
    data: Any

    @classmethod
    def read(cls, root: Path, rel: str) -> YamlFile:
        """The file at ``root/rel``; the parse is reused while the text is unchanged."""
        path = (root / rel).resolve()
        # Bytes, not read_text(): universal newlines would turn '\r\n' into '\n' on write.
        text = path.read_bytes().decode("utf-8")
        cached = _PARSED.get(path)
        if cached is not None and cached.text == text and cached.rel == rel:
            return cached  # ruamel's round-trip parser is slow; the web app reads a lot
        parsed = cls(rel, text, parse_yaml(text, rel))
        _PARSED[path] = parsed
        return parsed

    @cached_property
    def lines(self) -> list[str]:
        return split_lines(self.text)

    @property
    def newline(self) -> str:
        return "\r\n" if "\r\n" in self.text else "\n"


_PARSED: dict[Path, YamlFile] = {}


def rasa_examples(block: str) -> list[str]:
    """The examples of an ``examples: |`` block exactly as Rasa 3.6 reads them."""
    return [line[1:].strip("\n\r ") for line in block.splitlines() if line.startswith("-")]


@dataclass
class IntentBlock:
    """Where one ``- intent:`` item of an NLU file lies, line by line."""

    name: str
    rel: str
    item_index: int  # position in the file's nlu: list
    start: int  # first line of the item
    end: int  # line after its last line
    example_lines: list[int]  # the line of each example, in order
    texts: list[str]
    prefix: str  # what goes before the text on a new example line
    insert_at: int  # where a new example line goes (after the last one)
    problem: str | None = None  # why the workbench cannot edit this block, if it cannot


def top_level_end(f: YamlFile, key: str) -> int:
    """The line where the next top-level key starts (or the end of the file)."""
    root = f.data
    line = root.lc.key(key)[0]
    later = [root.lc.key(k)[0] for k in root if root.lc.key(k)[0] > line]
    return min(later) if later else len(f.lines)


def trim_end(lines: list[str], start: int, end: int, indent: int) -> int:
    """Move ``end`` back over blank lines and over comments that belong to what follows.

    A comment indented no deeper than the entry introduces the next entry (or section);
    deeper ones, and '#' lines inside a literal block, stay with this entry.
    """
    while end > start + 1 and (
        _is_blank(lines[end - 1])
        or (_is_comment(lines[end - 1]) and indent_of(lines[end - 1]) <= indent)
    ):
        end -= 1
    return end


def seq_item_range(f: YamlFile, seq: Any, index: int, container_end: int) -> tuple[int, int]:
    """Lines ``start:end`` of block-sequence item ``index`` (comments above it excluded)."""
    lines = f.lines
    start = seq.lc.item(index)[0]
    nxt = seq.lc.item(index + 1)[0] if index + 1 < len(seq) else container_end
    return start, trim_end(lines, start, nxt, indent_of(lines[start]))


def map_entry_range(f: YamlFile, mapping: Any, key: str, container_end: int) -> tuple[int, int]:
    """Lines ``start:end`` of the entry ``key`` of a block mapping."""
    lines = f.lines
    keys = list(mapping)
    position = keys.index(key)
    start = mapping.lc.key(key)[0]
    nxt = mapping.lc.key(keys[position + 1])[0] if position + 1 < len(keys) else container_end
    return start, trim_end(lines, start, nxt, indent_of(lines[start]))


def find_intent_blocks(f: YamlFile) -> list[IntentBlock]:
    """Every ``- intent:`` item of an NLU file, with the line of each example."""
    data = f.data
    if not isinstance(data, dict) or not isinstance(data.get("nlu"), list) or not data["nlu"]:
        return []
    seq, lines = data["nlu"], f.lines
    stop = top_level_end(f, "nlu")
    blocks = []
    for index, item in enumerate(seq):
        if not isinstance(item, dict) or "intent" not in item:
            continue
        start, end = seq_item_range(f, seq, index, stop)
        blocks.append(_intent_block(f, lines, item, index, start, end))
    return blocks


def _intent_block(
    f: YamlFile, lines: list[str], item: Any, index: int, start: int, end: int
) -> IntentBlock:
    name = str(item["intent"])
    raw = item.get("examples")
    if not isinstance(raw, str):
        listed = [str(e.get("text", "")).strip("\n\r ") for e in raw or [] if isinstance(e, dict)]
        reason = "its examples are not written as an `examples: |` block"
        return IntentBlock(name, f.rel, index, start, end, [], listed, "", end, reason)
    key_col = item.lc.key("examples")[1]
    line, col = item.lc.value("examples")
    content_indent: int | None = None
    example_lines: list[int] = []
    texts: list[str] = []
    last = line
    for number in range(line + 1, end):
        text = lines[number]
        if _is_blank(text):
            continue
        indent = indent_of(text)
        if content_indent is None:
            if indent <= key_col:
                break
            content_indent = indent
        elif indent < content_indent:
            break
        last = number
        body = text[content_indent:].rstrip("\r\n")
        if body.startswith("-"):
            example_lines.append(number)
            texts.append(body[1:].strip("\n\r "))
    prefix = " " * (key_col + 2) + "- "
    if example_lines:
        found = re.match(r" *- *", lines[example_lines[-1]])
        prefix = found.group(0) if found else prefix
    problem: str | None = None
    # Should the line scan ever disagree with the parser (an indentation indicator, an
    # exotic line break), the block is read-only rather than edited in the wrong place.
    if not lines[line][col:].startswith("|") or texts != rasa_examples(raw):
        problem = "its `examples: |` block has a layout the workbench cannot edit safely"
        texts = rasa_examples(raw)
    return IntentBlock(
        name, f.rel, index, start, end, example_lines, texts, prefix, last + 1, problem
    )


def tidy_delete(lines: list[str], start: int, end: int) -> LineEdit:
    """Delete lines ``start:end`` and the blank lines that separated them from a neighbour.

    One separator stays between the neighbours; nothing is left dangling at the end of the
    file; the blank line before a following parent-level key is kept.
    """
    item_indent = indent_of(lines[start])
    after = end
    while after < len(lines) and _is_blank(lines[after]):
        after += 1
    previous_blank = start > 0 and _is_blank(lines[start - 1])
    if after == len(lines):
        end = after
        while start > 0 and _is_blank(lines[start - 1]):
            start -= 1
    elif after > end and (previous_blank or indent_of(lines[after]) >= item_indent):
        end = after
    return LineEdit(start, end, ())


def insertion(f: YamlFile, at: int, new: Iterable[str]) -> LineEdit:
    """Insert lines before line ``at``; the file's last line gets its missing line end."""
    lines = f.lines
    if at == len(lines) and lines and not lines[-1].endswith("\n"):
        return LineEdit(at - 1, at, (lines[-1] + f.newline, *new))
    return LineEdit(at, at, tuple(new))


def token_edit(f: YamlFile, line: int, col: int, old: str, new: str) -> TokenEdit:
    """Replace the scalar ``old`` that the parser saw at ``line``/``col`` (quotes kept)."""
    text = f.lines[line]
    quote = text[col] if text[col : col + 1] in ("'", '"') else ""
    begin = col + len(quote)
    after = text[begin + len(old) : begin + len(old) + 1]
    if text[begin : begin + len(old)] != old or (after and re.match(r"[\w/.-]", after)):
        raise Conflict(
            f"{f.rel} line {line + 1} does not read '{old}' where expected; edit it by hand."
        )
    return TokenEdit(line, begin, len(old), new)


def apply_edits(lines: list[str], edits: Iterable[Edit]) -> str:
    """The text after the edits (token edits first; they never move lines)."""
    lines = list(lines)
    tokens = sorted((e for e in edits if isinstance(e, TokenEdit)), key=lambda e: (e.line, e.col))
    for token in reversed(tokens):
        text = lines[token.line]
        lines[token.line] = text[: token.col] + token.new + text[token.col + token.length :]
    spans = sorted((e for e in edits if isinstance(e, LineEdit)), key=lambda e: (e.start, e.end))
    for before, after in itertools.pairwise(spans):
        if after.start < before.end:
            raise RuntimeError("Overlapping edits; nothing was saved.")
    for span in reversed(spans):
        lines[span.start : span.end] = span.new
    return "".join(lines)


def quote(text: str) -> str:
    """A double-quoted YAML scalar (JSON's escapes are valid YAML ones)."""
    return json.dumps(text, ensure_ascii=False)


def to_plain(node: Any) -> Any:
    """ruamel's round-trip objects as plain dicts, lists, str, int, float, bool, None."""
    if isinstance(node, dict):
        return {to_plain(k): to_plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [to_plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return node


def summary(rel: str, data: Any) -> Any:
    """What a file means to Rasa, to compare before and after an edit.

    NLU example blocks become the list of examples Rasa reads from them, so that a splice
    is checked against exactly what training will see.
    """
    plain = to_plain(data)
    if rel.startswith("data/nlu/") and isinstance(plain, dict):
        for item in plain.get("nlu") or []:
            if isinstance(item, dict) and isinstance(item.get("examples"), str):
                item["examples"] = rasa_examples(item["examples"])
    return plain


def write_files(root: Path, texts: dict[str, str]) -> None:
    """Write each file through a temporary file in its directory and ``os.replace``.

    All temporary files are written (and synced) before the first replace, so a full disk
    or a crash while writing leaves every file as it was.
    """
    staged: list[tuple[str, Path]] = []
    try:
        for rel, text in texts.items():
            path = root / rel
            mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            staged.append((tmp, path))
            with os.fdopen(fd, "wb") as fh:
                fh.write(text.encode("utf-8"))
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, mode)  # mkstemp creates 0600; keep the file's own mode
        for tmp, path in staged:
            os.replace(tmp, path)
    finally:
        for tmp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
