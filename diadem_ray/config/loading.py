"""Loading plain data onto a structured schema, schema-agnostic: unknown keys (with the nearest
valid key), wrong types and unreadable YAML are collected as problems, never raised one by one."""

from __future__ import annotations

import dataclasses
import difflib
import typing
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, cast

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """All problems of one configuration, one per line."""

    def __init__(self, source: str, problems: Sequence[str]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s)\n{lines}")


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _list_item_dataclass(tp: Any) -> Optional[type]:
    if typing.get_origin(tp) in (list, List):
        (item,) = typing.get_args(tp)
        return item if _is_dataclass_type(item) else None
    return None


def _check_keys(schema: type, data: Any, prefix: str, origin: str, problems: List[str]) -> Any:
    """Drop (and report) keys that the schema does not have; recurse into nested dataclasses."""
    if not isinstance(data, dict):
        problems.append(f"{prefix or '<root>'}{origin}: expected a mapping of fields, got {type(data).__name__}")
        return {}
    hints = typing.get_type_hints(schema)
    clean: Dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in hints:
            near = difflib.get_close_matches(str(key), list(hints), n=1, cutoff=0.6)
            hint = f"; did you mean '{prefix}{near[0]}'?" if near else f"; valid keys: {', '.join(hints)}"
            problems.append(f"{path}{origin}: unknown key{hint}")
            continue
        tp = hints[key]
        if typing.get_origin(tp) is typing.Union:  # Optional[X]
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        if _is_dataclass_type(tp) and value is not None:
            clean[key] = _check_keys(tp, value, f"{path}.", origin, problems)
        elif (item := _list_item_dataclass(tp)) is not None and isinstance(value, list):
            clean[key] = [_check_keys(item, v, f"{path}[{i}].", origin, problems) for i, v in enumerate(value)]
        else:
            clean[key] = value
    return clean


def _leaves(schema: type, data: Dict[str, Any], prefix: str = "") -> Iterator[Tuple[str, Any, Any]]:
    """Yield (dotted key, value, type) per leaf; dataclass fields recurse, others are leaves."""
    hints = typing.get_type_hints(schema)
    for key, value in data.items():
        tp = hints[key]
        if _is_dataclass_type(tp) and isinstance(value, dict):
            yield from _leaves(tp, value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value, tp


def _apply(
    cfg: DictConfig, schema: type, data: Dict[str, Any], origin: str, problems: List[str], replace_mappings: bool = True
) -> None:
    leaves = list(_leaves(schema, data))
    if not replace_mappings:  # a dotlist override sets only the mapping key it names
        leaves = [(f"{k}.{sub}", v2, Any) for k, v, tp in leaves if isinstance(v, dict) for sub, v2 in v.items()] + [
            (k, v, tp) for k, v, tp in leaves if not isinstance(v, dict)
        ]
    for key, value, tp in leaves:
        try:
            item = _list_item_dataclass(tp)
            if item is not None and isinstance(value, list):
                # Typed list items must be built as structured nodes before assignment.
                value = [OmegaConf.merge(OmegaConf.structured(item), v) for v in value]
            # merge=False: a mapping or list given in a later YAML replaces the earlier one.
            OmegaConf.update(cfg, key, value, merge=False)
        except OmegaConfBaseException as exc:
            reason = str(exc).splitlines()[0]
            problems.append(f"{key}{origin}: cannot use {value!r} ({reason})")


def read_yaml(path: Path, problems: List[str]) -> Dict[str, Any]:
    if Path(path).exists() and not Path(path).is_file():  # a FIFO would block the reader; a folder fails obscurely
        kind = "a folder" if Path(path).is_dir() else "not a regular file (a FIFO, socket or device)"
        problems.append(f"{path}: {kind}; give a YAML file")
        return {}
    try:
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except FileNotFoundError:
        problems.append(f"{path}: no such file")
        return {}
    except Exception as exc:  # yaml syntax errors come in several types
        problems.append(f"{path}: not valid YAML ({str(exc).splitlines()[0]})")
        return {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(f"{path}: the top level must be a mapping, got {type(data).__name__}")
        return {}
    return cast(Dict[str, Any], data)


def parse_overrides(overrides: Sequence[str], problems: List[str]) -> List[tuple[str, Dict[str, Any]]]:
    parsed: List[tuple[str, Dict[str, Any]]] = []
    for item in overrides:
        if "=" not in item or item.startswith("="):
            problems.append(f"override '{item}': expected KEY=VALUE, e.g. learner.zero_stage=3")
            continue
        try:
            parsed.append((item, cast(Dict[str, Any], OmegaConf.to_container(OmegaConf.from_dotlist([item])))))
        except Exception as exc:
            problems.append(f"override '{item}': {str(exc).splitlines()[0]}")
    return parsed


def plain(cfg: Any) -> Dict[str, Any]:
    """A structured config, ``DictConfig`` or config dataclass as a plain, resolved ``dict``."""
    node = cfg if isinstance(cfg, DictConfig) else OmegaConf.structured(cfg)
    return cast(Dict[str, Any], OmegaConf.to_container(node, resolve=True))


def load_structured(schema: type, sources: Sequence[tuple[str, Dict[str, Any]]], problems: List[str]) -> DictConfig:
    """Merge (origin label, plain dict) sources onto ``schema``'s defaults, collecting problems.

    Sources whose label starts with `` (from override`` set single keys inside mappings; YAML
    sources replace whole mappings and lists.
    """
    cfg: DictConfig = OmegaConf.structured(schema)
    for origin, data in sources:
        clean = _check_keys(schema, data, "", origin, problems)
        _apply(cfg, schema, clean, origin, problems, replace_mappings=not origin.startswith(" (from override"))
    return cfg
