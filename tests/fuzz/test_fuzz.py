"""A bounded fuzz run of every parser surface (``tests/fuzz/surfaces.py``) in the suite.

``OPENCM_FUZZ_EXAMPLES`` sets the inputs per surface (default 150); ``tests/fuzz/campaign.py``
is the long run with figures.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings

from tests.fuzz.surfaces import SURFACES, Surface

EXAMPLES = int(os.environ.get("OPENCM_FUZZ_EXAMPLES", "150"))


@pytest.mark.parametrize("surface", SURFACES, ids=lambda s: s.name)
def test_every_input_is_accepted_or_refused_with_a_message(surface: Surface) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(surface.strategy())
    def run(data: bytes) -> None:
        surface.check(data)

    run()
