"""Human sizes and durations ("512MiB", "60s") for flags, options and the config file."""

from __future__ import annotations

from datetime import timedelta

from pydantic import ByteSize, TypeAdapter

_bytes = TypeAdapter(ByteSize)
_duration = TypeAdapter(timedelta)


def parse_size(text: str | int) -> int:
    """'512MiB', '20GB', '4096' → bytes."""
    return int(_bytes.validate_python(text))


def parse_duration(text: str | int | float) -> float:
    """'60s', '5m', '1h', '90', 'PT1M' → seconds."""
    if isinstance(text, (int, float)):
        return float(text)
    t = text.strip().lower()
    for suffix, factor in (("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400)):
        if t.endswith(suffix) and t[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(t[: -len(suffix)]) * factor
    return _duration.validate_python(text).total_seconds()
