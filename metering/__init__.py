"""metering: usage metering and cost accounting for LLM gateway traffic."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("metering")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
