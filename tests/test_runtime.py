"""``tune_gc``: startup objects frozen; rarer collections only for batch jobs (checked
in fresh processes: freezing the test runner itself would change every other test)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from metering.runtime import BATCH_THRESHOLDS


def _after_tune_gc(batch: bool) -> tuple[int, int, tuple[int, ...], tuple[int, ...], int]:
    code = (
        "import gc, metering.runtime as r\n"
        "before, defaults = gc.get_freeze_count(), gc.get_threshold()\n"
        f"r.tune_gc(batch={batch})\n"
        "print(before, gc.get_freeze_count(), *gc.get_threshold())\n"
        "print(*defaults)\n"
        "x = []; x.append(x); del x\n"  # a cycle made after the freeze is still collected
        "print(gc.collect())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    before, frozen, *thresholds = map(int, out[0].split())
    defaults = tuple(map(int, out[1].split()))
    return before, frozen, tuple(thresholds), defaults, int(out[2])


@pytest.mark.parametrize("batch", [False, True])
def test_tune_gc_freezes_startup_objects(batch: bool) -> None:
    before, frozen, thresholds, defaults, collected = _after_tune_gc(batch)
    assert before == 0 and frozen > 1_000
    assert thresholds == (BATCH_THRESHOLDS if batch else defaults)
    assert defaults != BATCH_THRESHOLDS
    assert collected >= 1
