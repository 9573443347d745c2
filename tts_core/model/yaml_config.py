"""Reading an official ``cosyvoice2.yaml`` without the official package.

hyperpyyaml resolves ``!ref`` references (and their arithmetic); the object tags it would
instantiate (``!new:``, ``!name:``, ``!apply:``) are kept as :class:`YamlObject` records instead,
so nothing from ``cosyvoice``/``matcha`` is imported and no model is built at read time.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ruamel.yaml
from hyperpyyaml import resolve_references


@dataclass
class YamlObject:
    """A tagged yaml node: ``!new:pkg.Class {kwargs}`` -> kind 'new', target 'pkg.Class'."""

    kind: str  # "new" | "name" | "apply" | "module" | ...
    target: str  # dotted python path as written in the yaml
    kwargs: dict[str, Any] = field(default_factory=dict)
    args: list[Any] = field(default_factory=list)

    @property
    def class_name(self) -> str:
        return self.target.rsplit(".", 1)[-1]

    def get(self, key: str, default: Any = None) -> Any:
        return self.kwargs.get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self.kwargs[key]


def _construct_tagged(loader: Any, tag_suffix: str, node: Any) -> YamlObject:
    kind, _, target = tag_suffix.partition(":")
    if isinstance(node, ruamel.yaml.MappingNode):
        return YamlObject(kind, target, kwargs=loader.construct_mapping(node, deep=True))
    if isinstance(node, ruamel.yaml.SequenceNode):
        return YamlObject(kind, target, args=loader.construct_sequence(node, deep=True))
    value = loader.construct_scalar(node)
    return YamlObject(kind, target, args=[value] if value not in ("", None) else [])


class _TaggedConstructor(ruamel.yaml.constructor.SafeConstructor):
    """SafeConstructor plus the tag handler; a subclass, because ruamel registers constructors
    per class and registering on SafeConstructor would leak into hyperpyyaml's own loader."""


_TaggedConstructor.add_multi_constructor("!", _construct_tagged)


def read_yaml(path: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Parse ``path`` into plain python values with :class:`YamlObject` for tagged nodes.

    Raises ValueError (naming the file) for text that is not valid yaml.
    """
    text = Path(path).read_text(encoding="utf-8")
    try:
        resolved = resolve_references(io.StringIO(text), overrides=overrides or {})
        yaml = ruamel.yaml.YAML(typ="safe", pure=True)
        yaml.Constructor = _TaggedConstructor
        data = yaml.load(resolved.getvalue())
    except Exception as exc:  # ruamel/hyperpyyaml raise many error types for bad yaml
        raise ValueError(f"{path}: not a readable CosyVoice yaml ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level of the yaml")
    return data
