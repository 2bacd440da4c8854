"""Every sampler x schedule pair on the embedded default (issue 34): runs, names its schedule in the infotext,
and is deterministic on its own schedule. In its own file so that the test workers can run it beside the tiny
SD 1.x matrix (tests/test_sampler_schedule_matrix.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_sampler_schedule_matrix import EMBEDDED, _active, _run_matrix


@pytest.mark.slow
def test_every_pair_runs_on_the_embedded_default(model_cache_dir: Path, tmp_path: Path) -> None:
    if not EMBEDDED.is_file():
        pytest.skip(f"the embedded default {EMBEDDED.name} is not present")
    # every pair runs (one step: the schedule's first level to the end; the two-step walk and the noise streams'
    # determinism are checked for every pair on tiny SD 1.x); determinism again for each sampler on its own schedule
    _run_matrix(_active(EMBEDDED, model_cache_dir), tmp_path, twice=lambda sampler, schedule: schedule == "Automatic",
                steps=1)
