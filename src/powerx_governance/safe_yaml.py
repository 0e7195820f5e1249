"""YAML and JSON documents read safely: size-capped, safe constructors, bounded aliases."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import msgspec
import yaml

from powerx_governance.errors import InputError, InputProblem

MAX_DOCUMENT_BYTES: Final = 64 * 1024 * 1024
MAX_ALIASES: Final = 200
MAX_EXPANDED_NODES: Final = 5_000_000  # nodes after alias expansion; a real catalog has well under 1M


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses alias bombs: at most MAX_ALIASES alias references per document."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_ALIASES} YAML aliases: refusing a possible alias bomb")
        return super().compose_node(parent, index)

    def compose_document(self) -> yaml.Node | None:
        node: yaml.Node | None = super().compose_document()
        if node is not None and _expanded_size(node, {}) > MAX_EXPANDED_NODES:
            raise yaml.YAMLError(
                f"document expands to over {MAX_EXPANDED_NODES} nodes through aliases: refusing an alias bomb"
            )
        return node


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Node count with every alias expanded, computed over the shared graph without expanding it."""
    known = memo.get(id(node))
    if known is not None:
        return known
    memo[id(node)] = 1  # cycles (recursive aliases) count once instead of looping
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    memo[id(node)] = size
    return size


def read_bytes(path: Path, *, limit: int = MAX_DOCUMENT_BYTES) -> bytes:
    """Read a file, refusing anything larger than `limit` bytes."""
    try:
        size = path.stat().st_size
        if size > limit:
            raise InputError(
                InputProblem(str(path), None, None, f"file is {size} bytes, over the {limit} limit")
            )
        return path.read_bytes()
    except OSError as exc:
        raise InputError(InputProblem(str(path), None, None, f"cannot read: {exc.strerror}")) from exc


def parse_document(data: bytes, source: str) -> Any:
    """Parse JSON (fast path) or YAML text into plain Python data."""
    stripped = data.lstrip()
    if stripped[:1] in (b"{", b"["):
        try:
            return msgspec.json.decode(data)
        except msgspec.DecodeError:
            pass  # JSON-looking YAML (flow style) is still valid YAML: fall through
    try:
        return yaml.load(data.decode("utf-8"), Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader subclass
    except UnicodeDecodeError as exc:
        raise InputError(InputProblem(source, None, None, "not UTF-8 text")) from exc
    except yaml.YAMLError as exc:
        raise InputError(InputProblem(source, None, None, f"invalid YAML/JSON: {exc}")) from exc
    except RecursionError as exc:
        raise InputError(InputProblem(source, None, None, "document is nested too deeply")) from exc


def load_document(path: Path, *, limit: int = MAX_DOCUMENT_BYTES) -> Any:
    """Read and parse one YAML or JSON file."""
    return parse_document(read_bytes(path, limit=limit), str(path))
