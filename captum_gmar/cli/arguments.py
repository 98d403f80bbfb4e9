"""The commands' argument types: each turns a string into a value or raises
:class:`argparse.ArgumentTypeError`, which the parser reports with the usage line.
torch-free, so that ``--help`` answers at once."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["choices", "device", "float_between", "folder", "int_at_least"]


def int_at_least(least: int, most: int | None = None) -> Callable[[str], int]:
    """An integer of at least ``least`` (and at most ``most``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
        if most is not None and value > most:
            raise argparse.ArgumentTypeError(f"must be at most {most}, got {value}")
        return value

    return parse


def float_between(least: float, most: float) -> Callable[[str], float]:
    """A finite number from ``least`` to ``most``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not least <= value <= most:  # NaN fails too
            raise argparse.ArgumentTypeError(f"must be from {least:g} to {most:g}, got {text}")
        return value

    return parse


def device(text: str) -> str:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", text):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}: use auto (CUDA when available), cpu, cuda or cuda:N")
    return text


def folder(text: str) -> str:
    """A folder that exists."""
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not a folder")
    return text


def choices(allowed: Sequence[str], what: str) -> Callable[[str], tuple[str, ...]]:
    """A comma-separated list of keys of ``allowed``."""

    def parse(text: str) -> tuple[str, ...]:
        keys = [key.strip() for key in text.split(",") if key.strip()]
        unknown = [key for key in keys if key not in allowed]
        if unknown or not keys:
            raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(unknown) or '(none given)'}; choose from {', '.join(allowed)}")
        return tuple(keys)

    return parse
