"""InputBuffer: priming, underruns, bounded depth under clock drift, thread safety.

Speech is a loud ramp whose samples encode their own position in the stream, so the tests
can tell exactly which audio came out, in which order, and what was dropped.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import pytest

from majlis.media.frames import TICK_SAMPLES, Samples, silence
from majlis.media.inputbuffer import DepthPolicy, InputBuffer

# Values 0.25 + k * 2**-25 are exact in float32 for k < 2**23 and sit near -10 dBFS: speech.
_PERIOD = 1 << 22
_STEP = 2.0**-25

TICKS_PER_MINUTE = 3_000


def ramp(start: int, n: int = TICK_SAMPLES) -> Samples:
    ids = np.arange(start, start + n, dtype=np.int64) % _PERIOD
    return (0.25 + ids * _STEP).astype(np.float32)


def ids_of(samples: Samples) -> npt.NDArray[np.int64]:
    """Stream positions of the speech samples in ``samples`` (silence is skipped)."""
    speech = samples[samples != 0.0].astype(np.float64)
    return np.rint((speech - 0.25) / _STEP).astype(np.int64)


def breaks(ids: npt.NDArray[np.int64]) -> int:
    """How many times the speech stream jumps (audio lost) instead of advancing by one."""
    return int(np.count_nonzero(np.diff(ids) % _PERIOD != 1))


def test_primes_until_target_depth_then_plays_from_the_start() -> None:
    buf = InputBuffer()
    assert buf.policy.target == 2 * TICK_SAMPLES
    buf.push(ramp(0))
    assert not buf.pull().any(), "must stay silent while below the target depth"
    assert buf.depth == TICK_SAMPLES, "priming must not consume audio"
    buf.push(ramp(TICK_SAMPLES))
    first = buf.pull()
    np.testing.assert_array_equal(first, ramp(0))
    np.testing.assert_array_equal(buf.pull(), ramp(TICK_SAMPLES))
    assert buf.stats.underruns == 0


def test_underrun_pads_with_silence_and_primes_again() -> None:
    buf = InputBuffer()
    half = TICK_SAMPLES // 2
    buf.push(ramp(0, 2 * TICK_SAMPLES + half))
    buf.pull()
    buf.pull()
    short = buf.pull()
    np.testing.assert_array_equal(short[:half], ramp(2 * TICK_SAMPLES, half))
    np.testing.assert_array_equal(short[half:], silence(TICK_SAMPLES - half))
    assert buf.stats.underruns == 1
    assert buf.depth == 0

    # Primed again: one tick is not enough to resume, two are.
    buf.push(ramp(10_000))
    assert not buf.pull().any()
    buf.push(ramp(10_000 + TICK_SAMPLES))
    np.testing.assert_array_equal(buf.pull(), ramp(10_000))
    assert buf.stats.underruns == 1


def test_pull_across_uneven_chunks_keeps_order() -> None:
    buf = InputBuffer()
    sizes = [100, 700, 1, 959, 2000, 300]
    start = 0
    for size in sizes:
        buf.push(ramp(start, size))
        start += size
    out = np.concatenate([buf.pull() for _ in range(start // TICK_SAMPLES)])
    np.testing.assert_array_equal(out, ramp(0, out.size))
    assert buf.depth == start - out.size
    assert buf.stats.pushed_samples == start


def test_quiet_tick_dropped_only_while_deeper_than_high() -> None:
    policy = DepthPolicy(target=2 * TICK_SAMPLES, high=5 * TICK_SAMPLES, limit=20 * TICK_SAMPLES)
    buf = InputBuffer(policy)
    for _ in range(8):
        buf.push(silence())
    buf.pull()  # takes one tick: 7 left > high (5): the next quiet tick goes
    assert buf.depth == 6 * TICK_SAMPLES
    assert buf.stats.quiet_drops == 1
    buf.pull()  # 5 left, not over high: nothing more is dropped
    assert buf.depth == 5 * TICK_SAMPLES == policy.high
    buf.pull()
    assert buf.depth == 4 * TICK_SAMPLES
    assert buf.stats.quiet_drops == 1


def test_speech_is_not_dropped_when_deeper_than_high() -> None:
    buf = InputBuffer()
    buf.push(ramp(0, 12 * TICK_SAMPLES))
    out = np.concatenate([buf.pull() for _ in range(12)])
    np.testing.assert_array_equal(out, ramp(0, 12 * TICK_SAMPLES))
    assert buf.stats.quiet_drops == 0
    assert buf.stats.overflow_drops == 0


def test_overflow_keeps_the_newest_audio_and_counts() -> None:
    policy = DepthPolicy()
    buf = InputBuffer(policy)
    pushes = policy.limit // TICK_SAMPLES + 1
    for k in range(pushes):
        buf.push(ramp(k * TICK_SAMPLES))
    assert buf.stats.overflow_drops == 1
    assert buf.depth == policy.target
    newest = ramp((pushes - 2) * TICK_SAMPLES, policy.target)
    np.testing.assert_array_equal(np.concatenate([buf.pull(), buf.pull()]), newest)


def _run_drift(
    buf: InputBuffer, minutes: float, speaking: bool | None = None
) -> tuple[Samples, list[int], int]:
    """Simulate a producer 2 % faster than the mixer clock (51 pushes per 50 ticks).

    ``speaking=None``: 1.5 s of speech then 0.5 s of pause, repeated; otherwise always on.
    Returns everything pulled, the depth after each pull, and the speech samples pushed.
    """
    pulled: list[Samples] = []
    depths: list[int] = []
    pushes = 0
    spoken = 0
    for tick in range(int(minutes * TICKS_PER_MINUTE)):
        while pushes < (tick + 1) * 51 // 50:
            talking = speaking if speaking is not None else pushes % 100 < 75
            if talking:
                buf.push(ramp(spoken))
                spoken += TICK_SAMPLES
            else:
                buf.push(silence())
            pushes += 1
        pulled.append(buf.pull())
        depths.append(buf.depth)
    return np.concatenate(pulled), depths, spoken


def test_drift_is_absorbed_in_pauses_without_losing_speech() -> None:
    policy = DepthPolicy()
    buf = InputBuffer(policy)
    out, depths, spoken = _run_drift(buf, minutes=10)
    ids = ids_of(out)
    # Without the policy the buffer would be 2 % x 10 min = 12 s deep by now.
    assert max(depths) <= policy.high + 3 * TICK_SAMPLES, max(depths) / TICK_SAMPLES
    assert buf.stats.overflow_drops == 0
    assert buf.stats.underruns == 0
    assert buf.stats.quiet_drops >= 590, "about one tick per second must go in the pauses"
    assert breaks(ids) == 0, "a pause absorbed the drift but speech was lost"
    assert ids[0] == 0
    assert 0 <= spoken - ids.size <= buf.depth, "only what is still buffered may be missing"


def test_nonstop_speech_is_cut_only_beyond_the_limit() -> None:
    policy = DepthPolicy()
    buf = InputBuffer(policy)
    out, depths, spoken = _run_drift(buf, minutes=10, speaking=True)
    ids = ids_of(out)
    assert buf.stats.quiet_drops == 0
    # 19.2 ms of extra audio per second; each overflow goes from one push past the limit
    # back to the target: one every ~19 s.
    expected = 600 * 0.02 * 48_000 / (policy.limit + TICK_SAMPLES - policy.target)
    assert abs(buf.stats.overflow_drops - expected) <= 1, buf.stats
    assert breaks(ids) == buf.stats.overflow_drops, "speech lost without an overflow"
    assert max(depths) <= policy.limit
    assert spoken - ids.size - buf.depth > 0


@pytest.fixture
def eager_thread_switches() -> Iterator[None]:
    # Switch threads every microsecond instead of every 5 ms, so that an unlocked
    # read-modify-write between push and pull actually gets interrupted in a short test.
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


@pytest.mark.usefixtures("eager_thread_switches")
def test_concurrent_push_and_pull_keep_every_sample_in_order() -> None:
    # No drops at all: any lost, duplicated or reordered sample is the lock's fault.
    buf = InputBuffer(DepthPolicy(target=TICK_SAMPLES, high=10**9, limit=10**9))
    rng = np.random.default_rng(7)
    sizes = rng.integers(1, 3 * TICK_SAMPLES, size=2_000)
    total = int(sizes.sum())

    def produce() -> None:
        start = 0
        for size in sizes:
            buf.push(ramp(start, int(size)))
            start += int(size)
        # Trailing silence lets the last speech samples reach the front of the buffer.
        buf.push(silence(2 * TICK_SAMPLES))

    pusher = threading.Thread(target=produce)
    pusher.start()
    got: list[npt.NDArray[np.int64]] = []
    received = 0
    deadline = time.monotonic() + 30
    while received < total and time.monotonic() < deadline:
        ids = ids_of(buf.pull())
        got.append(ids)
        received += ids.size
    pusher.join(5)
    ids = np.concatenate(got)
    assert received == total, f"{received} of {total} samples came out"
    np.testing.assert_array_equal(ids, np.arange(total) % _PERIOD)
    assert buf.stats.pushed_samples == total + 2 * TICK_SAMPLES


@pytest.mark.usefixtures("eager_thread_switches")
def test_concurrent_overflow_never_duplicates_or_reorders() -> None:
    # A producer far ahead of the consumer: overflow trims run while pulls take audio.
    buf = InputBuffer(DepthPolicy(target=TICK_SAMPLES, high=10**9, limit=4 * TICK_SAMPLES))
    sizes = np.random.default_rng(11).integers(1, 2 * TICK_SAMPLES, size=4_000)
    total = int(sizes.sum())
    assert total < _PERIOD
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            start = 0
            for size in sizes:
                buf.push(ramp(start, int(size)))
                start += int(size)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    pusher = threading.Thread(target=produce)
    pusher.start()
    got: list[npt.NDArray[np.int64]] = []
    deadline = time.monotonic() + 30
    while pusher.is_alive() and time.monotonic() < deadline:
        got.append(ids_of(buf.pull()))
    pusher.join(5)
    assert not errors, errors
    ids = np.concatenate(got)
    assert buf.stats.overflow_drops > 0, "the overflow path was not exercised"
    assert np.all(np.diff(ids) > 0), "audio came out twice or out of order"
    # What is left is exactly what the depth says: drain it in one pull.
    left = buf.depth
    if left:
        rest = ids_of(buf.pull(left))
        assert rest.size in (0, left)
        assert rest.size == 0 or (ids.size == 0 or rest[0] > ids[-1])
