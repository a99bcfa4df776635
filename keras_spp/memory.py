"""This process's peak resident memory, per stage: ``VmHWM`` read from
``/proc/self/status`` and reset through ``/proc/self/clear_refs`` (Linux 4.0+);
elsewhere the lifetime peak from ``getrusage``, which cannot be reset."""

import resource


def reset_peak_rss():
    """Makes the peak this process's current resident size (a no-op where Linux's
    ``clear_refs`` is missing)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_bytes():
    """The peak resident size since the last ``reset_peak_rss`` (or the start), in bytes."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
