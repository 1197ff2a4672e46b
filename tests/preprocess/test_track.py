"""The track step (`preprocess/track.py`): a clip's frames split between worker processes."""

from ua3dtalk_jax.preprocess import track


def test_tracking_is_split_between_workers():
    """The face-mesh pass (the slow step) gets one contiguous range per worker (the pipeline test's
    fixture runs two processes); clips shorter than two MIN_CHUNKs stay in one (spawning costs
    ~2 s)."""
    m = track.MIN_CHUNK
    assert track.chunks(2 * m, 2) == [(0, m), (m, None)]
    assert track.chunks(5 * m + 1, 2) == [(0, (5 * m + 1) // 2), ((5 * m + 1) // 2, None)]
    assert track.chunks(2 * m - 1, 2) == [(0, None)]
    assert track.chunks(10 * m, 1) == [(0, None)]
