"""Where the shipped data lives: inside the wheel, or beside the package in a checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def _data_dir(name: str) -> Path:
    installed = _PACKAGE_DIR / "_data" / name  # wheel: force-included by pyproject
    if installed.is_dir():
        return installed
    checkout = _PACKAGE_DIR.parent / name  # source checkout / editable install
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"metering's {name}/ directory is missing from the installation")


def migrations_dir() -> Path:
    return _data_dir("migrations")


def pricing_dir() -> Path:
    return _data_dir("pricing")
