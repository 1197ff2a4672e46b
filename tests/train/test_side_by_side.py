"""`train.side_by_side.run`: jobs run at once, and one failure (or an interruption) ends them all."""

import threading
import time

import pytest

from ua3dtalk_jax.train import side_by_side
from ua3dtalk_jax.train.side_by_side import Stopped


def _looping(stop, seen):
    """A job that runs until stopped (at most 10 s: a test that hangs fails instead)."""
    end = time.monotonic() + 10
    while time.monotonic() < end:
        if stop.is_set():
            seen.append("stopped")
            raise Stopped("stopped")
        time.sleep(0.005)
    raise AssertionError("the job was never stopped")


def test_jobs_run_at_once_and_return_their_results():
    both = threading.Barrier(2, timeout=10)  # passes only when the two jobs wait at the same time

    def job(name):
        def run(stop):
            both.wait()
            assert not stop.is_set()
            return name.upper()

        return run

    assert side_by_side.run({"face": job("face"), "mouth": job("mouth")}) == {
        "face": "FACE",
        "mouth": "MOUTH",
    }


def test_a_failing_job_stops_the_other_and_its_error_is_raised():
    seen = []

    def fails(stop):
        time.sleep(0.05)
        raise ValueError("face diverged")

    with pytest.raises(ValueError, match="face diverged"):
        side_by_side.run({"face": fails, "mouth": lambda stop: _looping(stop, seen)})
    assert seen == ["stopped"]


@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit])
def test_an_interruption_inside_a_job_ends_the_others_and_propagates(error):
    seen = []

    def interrupted(stop):
        time.sleep(0.05)
        raise error()

    with pytest.raises(error):
        side_by_side.run({"a": lambda stop: _looping(stop, seen), "b": interrupted})
    assert seen == ["stopped"]
