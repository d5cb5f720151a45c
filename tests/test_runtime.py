"""``tune_gc``: startup objects frozen, collections rarer (checked in a fresh process:
freezing the test runner itself would change every other test's process)."""

from __future__ import annotations

import subprocess
import sys

from metering.runtime import OLDER_THRESHOLDS, YOUNG_THRESHOLD


def test_tune_gc_freezes_startup_objects_and_raises_thresholds() -> None:
    code = (
        "import gc, metering.runtime as r\n"
        "before = gc.get_freeze_count()\n"
        "r.tune_gc()\n"
        "print(before, gc.get_freeze_count(), *gc.get_threshold())\n"
        "x = []; x.append(x); del x\n"  # a cycle is still collected
        "print(gc.collect())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    before, frozen, young, mid, old = map(int, out[0].split())
    assert before == 0 and frozen > 1_000
    assert (young, mid, old) == (YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
    assert int(out[1]) >= 1
