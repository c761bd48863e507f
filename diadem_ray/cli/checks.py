"""Argument value types and file checks of the ``diadem-ray`` command line: bad input gets a
message naming the input and the fix."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional, Sequence


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def port_number(text: str) -> int:
    """argparse type: a TCP port."""
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port (1-65535)")
    return value


def unit_interval(text: str) -> float:
    """argparse type: a number in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return value


def not_regular_file(label: str, path: str) -> Optional[str]:
    """Why ``path`` cannot be read as an input file (missing, a folder, a FIFO or device), or None."""
    p = Path(path)
    if not p.exists():
        return f"{label} {path}: no such file"
    if not p.is_file():
        kind = "a folder" if p.is_dir() else "not a regular file (a FIFO, socket or device)"
        return f"{label} {path}: {kind}; give a regular file"
    return None


def not_writable_file(label: str, path: str) -> Optional[str]:
    """Why ``path`` cannot be written as an output file, or None."""
    p = Path(path)
    if p.exists() and not p.is_file():
        return f"{label} {path}: exists and is not a regular file; give a file path"
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"{label} {path}: {parent} is not a folder"
    return None


def loaded_config(path: Any, overrides: Sequence[str]) -> Any:
    """The config at ``path`` with ``overrides``, or None after printing every problem it has."""
    from diadem_ray.config import ConfigError, load_config

    try:
        return load_config(path, overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
