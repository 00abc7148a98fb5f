"""Load YAML while remembering where every value came from.

Validation errors must name file:line:column, so we keep a map from each
value's path (keys and list indexes) to its position in the file.  Duplicate
keys are reported too: PyYAML would silently keep the last one, which hides
a teacher's copy-paste mistake.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import yaml

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file, with where it is."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}:{self.column}: {where}{self.message}"


@dataclass
class Source:
    """Parsed YAML plus a path -> (line, column) index (1-based)."""

    file: str
    data: Any
    marks: dict[Path, tuple[int, int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def locate(self, path: Path) -> tuple[int, int]:
        """Position of the deepest known ancestor of ``path`` (a missing key points at its parent)."""
        for end in range(len(path), -1, -1):
            mark = self.marks.get(tuple(path[:end]))
            if mark:
                return mark
        return (1, 1)

    def problem(self, path: Path, message: str) -> Problem:
        line, column = self.locate(path)
        return Problem(self.file, line, column, format_path(path), message)


def format_path(path: Path) -> str:
    """``('students', 2, 'email')`` -> ``students[2].email``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def load(text: str, file: str) -> Source:
    """Parse one YAML document; syntax errors become Problems instead of exceptions."""
    import yaml  # here, not at the top: a command whose files are remembered (config.cache) never parses

    # libyaml's loader is ~6x faster on a 1000-student roster and keeps line/column marks just the same.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return Source(file, None, problems=[Problem(file, 1, 1, "", "the file is empty")])
        source = Source(file, None)
        _index(node, (), source)
        source.data = loader.construct_document(node)
        return source
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        return Source(file, None, problems=[Problem(file, line, column, "", f"YAML syntax error: {message}")])
    finally:
        loader.dispose()


def _index(node: yaml.Node, path: Path, source: Source) -> None:
    import yaml

    source.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            if key in seen:
                line, column = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                source.problems.append(
                    Problem(source.file, line, column, format_path(path + (key,)), f"duplicate key {key!r}")
                )
            seen.add(key)
            _index(value_node, path + (key,), source)
            # the key's own position is the most useful place to point at
            source.marks[path + (key,)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index(item, path + (index,), source)
