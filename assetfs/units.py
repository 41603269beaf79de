"""Human sizes and durations ("512MiB", "60s") for flags, options and the config file."""

from __future__ import annotations

from datetime import timedelta

from pydantic import ByteSize, TypeAdapter, ValidationError

_bytes = TypeAdapter(ByteSize)
_duration = TypeAdapter(timedelta)
_UNITS = (("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400))


def parse_size(text: str | int) -> int:
    """'512MiB', '20GB', '4096' → bytes."""
    try:
        return int(_bytes.validate_python(text))
    except ValidationError:
        raise ValueError(f"not a size: {text!r} (for example 4096, 512MiB, 20GB)") from None


def parse_duration(text: str | int | float) -> float:
    """'60s', '5m', '1h', '90', 'PT1M' → seconds."""
    if isinstance(text, (int, float)):
        return float(text)
    t = text.strip().lower()
    for suffix, factor in (("", 1), *_UNITS):
        number = t[: len(t) - len(suffix)] if suffix else t
        if t.endswith(suffix) and number.replace(".", "", 1).isdigit():
            return float(number) * factor
    try:
        return _duration.validate_python(text).total_seconds()
    except ValidationError:
        raise ValueError(f"not a duration: {text!r} (for example 30s, 5m, 1h)") from None


def parse_interval(text) -> float | None:
    """A duration, or None for 'off' (also 'none', 0): something that may be switched off."""
    if text is None or (isinstance(text, str) and text.strip().lower() in ("off", "none", "")):
        return None
    seconds = parse_duration(text)
    if seconds < 0:
        raise ValueError(f"not a duration: {text!r} (for example 30s, 5m, or off)")
    return seconds or None
