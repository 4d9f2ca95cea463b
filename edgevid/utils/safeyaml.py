"""The one YAML loader for everything a user hands edgevid (recipes, overrides, the recipe.yaml of a run).

``yaml.safe_load`` builds no objects from tags, but it still follows anchors and aliases: a 400-byte file of
nested aliases (the "billion laughs" shape) loads as a small graph of shared references that anything walking
it as a tree (validation, ``to_dict``, printing) expands to billions of nodes. This loader composes the node
graph first and refuses, with one :class:`EdgevidError` naming the file, a document that

- is larger than :data:`MAX_BYTES`,
- uses more than :data:`MAX_ALIASES` aliases (recipes need none; a few ``<<: *defaults`` merges are fine),
- is nested deeper than :data:`MAX_DEPTH`, refers to itself (a recursive alias), or
- would expand (every alias counted as a copy of what it names) to more than :data:`MAX_EXPANDED` units, a node
  counting 1 plus the length of its text,

so what comes back is plain data whose tree walk costs about what the file's size does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from edgevid.errors import EdgevidError

MAX_BYTES = 1 << 20
MAX_ALIASES = 64
MAX_DEPTH = 64
MAX_EXPANDED = 1_000_000


class YamlRefusedError(EdgevidError):
    """A YAML document over one of the bounds: refused, whoever asks (an override's value is not re-read as text)."""


class _Refused(Exception):
    """A document over one of the bounds (the message says which)."""


class _BoundedLoader(yaml.SafeLoader):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _Refused(f"more than {MAX_ALIASES} aliases (*name); write the values out")
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(f"nested deeper than {MAX_DEPTH} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a recursive alias or an expanded size over :data:`MAX_EXPANDED` (iterative: no recursion limit)."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            own = 1 + (len(node.value) if isinstance(node, yaml.ScalarNode) else 0)
            total = own + sum(sizes[id(child)] for child in _children(node))
            if total > MAX_EXPANDED:
                raise _Refused(f"its aliases expand to more than {MAX_EXPANDED:,} nodes and characters")
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise _Refused("an alias refers to a node that contains it (a recursive structure)")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


def _where(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    return f" (line {mark.line + 1})" if mark is not None else ""


def load_yaml_text(text: str, source: str) -> Any:
    """Plain data of one YAML document, within the bounds above; ``source`` names it in errors."""
    if len(text) > MAX_BYTES:
        raise YamlRefusedError(f"{source}: YAML larger than {MAX_BYTES >> 10} KiB refused")
    loader = None
    try:
        loader = _BoundedLoader(text)  # the reader refuses control characters here already
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    except _Refused as exc:
        raise YamlRefusedError(f"{source}: YAML refused: {exc}") from None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or ""
        detail = f": {problem}" if problem else ""
        raise EdgevidError(f"{source}: not valid YAML{_where(exc)}{detail}") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # e.g. a 5000-digit int, 2020-13-45
        first = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise EdgevidError(f"{source}: a value cannot be read as YAML ({first})") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_yaml_file(path: str | Path, what: str = "YAML file") -> Any:
    """:func:`load_yaml_text` of a file, refusing files over :data:`MAX_BYTES` before reading them."""
    path = Path(path)
    if path.is_dir():
        raise EdgevidError(f"{path}: is a folder, expected a {what}")
    if not path.is_file():
        raise EdgevidError(f"{path}: no such {what}")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise EdgevidError(f"{path}: {size >> 10} KiB is too large for a {what} (at most {MAX_BYTES >> 10} KiB)")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EdgevidError(f"{path}: not a text {what} (byte {exc.start} is not UTF-8)") from None
    return load_yaml_text(text, str(path))
