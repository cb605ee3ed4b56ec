from __future__ import annotations

import pytest

from tests.unit.packaging.tone import Encoded, encode, tone_with_onset


@pytest.fixture(scope="session")
def encoded_tone() -> Encoded:
    """Two and a half seconds of a 1 kHz tone (after 100 ms of silence), as AAC packets."""
    return encode(tone_with_onset(2.5))
