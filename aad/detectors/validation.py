"""Constructor-argument checks shared by the detectors (each raises ``ValueError``).

Detectors call these from ``__init__`` (a bad config fails before any fitting) and again at
``fit`` (so ``set_params`` cannot smuggle in a bad value).
"""

from __future__ import annotations

import numbers
from collections.abc import Collection


def check_int(
    owner: str, name: str, value: object, minimum: int, *, allow_none: bool = False
) -> None:
    """An integer (not a bool) >= ``minimum``, or ``None`` when ``allow_none``."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        none = " or None" if allow_none else ""
        raise ValueError(f"{owner}: {name} must be an integer >= {minimum}{none}, got {value!r}")


def check_float(
    owner: str,
    name: str,
    value: object,
    low: float,
    high: float = float("inf"),
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """A real number within [low, high] (an end is excluded when ``*_open``)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        ok = (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high
        )
    if not ok:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        raise ValueError(f"{owner}: {name} must be in {left}{low}, {high}{right}, got {value!r}")


def check_choice(owner: str, name: str, value: object, choices: Collection[object]) -> None:
    """One of ``choices``."""
    if isinstance(value, bool) or not any(value == choice for choice in choices):
        raise ValueError(f"{owner}: {name} must be one of {tuple(choices)}, got {value!r}")


def check_fraction_or_count(owner: str, name: str, value: object, *choices: str) -> None:
    """A float in (0, 1], an integer >= 1, or one of the strings ``choices`` (e.g. "auto")."""
    if isinstance(value, str) and value in choices:
        return
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1:
        return
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and 0.0 < value <= 1.0:
        return
    extra = "".join(f" or {c!r}" for c in choices)
    raise ValueError(
        f"{owner}: {name} must be a float in (0, 1], an integer >= 1{extra}, got {value!r}"
    )
