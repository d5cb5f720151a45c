"""metering: usage metering and cost accounting for LLM gateway traffic."""

from __future__ import annotations

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    # __version__ is read from the package metadata on first use: importlib.metadata costs
    # ~45 ms, which every CLI command would pay at start-up.
    if name != "__version__":
        raise AttributeError(f"module 'metering' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("metering")
    except PackageNotFoundError:  # running from a checkout that was never installed
        found = "0+unknown"
    globals()["__version__"] = found
    return found
