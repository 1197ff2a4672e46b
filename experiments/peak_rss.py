"""The kernel's peak-RSS mark of this process: read it, reset it (bench_train, bench_memory).

VmHWM in /proc/self/status is the peak resident set since the process started or since the last
write of "5" to /proc/self/clear_refs; where /proc is absent (not Linux), ru_maxrss, which cannot
be reset. Figures are in GB (10⁹ bytes).
"""

from __future__ import annotations

import resource


def reset_peak() -> bool:
    """Resets the kernel's peak-RSS mark of this process (False where not permitted)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_gb() -> float:
    """VmHWM (peak resident set since the last reset) in GB; ru_maxrss where /proc is absent."""
    kb = _status_kb("VmHWM")
    if kb is None:
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1e6


def rss_gb() -> float:
    """VmRSS (the resident set now) in GB; nan where /proc is absent."""
    kb = _status_kb("VmRSS")
    return float("nan") if kb is None else kb / 1e6


def available_gb() -> float:
    """MemAvailable of the machine in GB (inf where /proc is absent)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1e6
    except OSError:
        pass
    return float("inf")
