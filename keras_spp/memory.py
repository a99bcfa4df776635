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


def release_free_memory():
    """Returns the C heap's free pages to the system (glibc's ``malloc_trim``); a
    no-op elsewhere. Between stages of a long job: numpy arrays and TensorFlow
    buffers freed by a stage otherwise stay resident in glibc's arenas (its mmap
    threshold rises with every large block freed), so the next stage's peak would
    stand on the last one's. Returns whether memory was released."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        return bool(ctypes.CDLL(name).malloc_trim(0))
    except (OSError, AttributeError):
        return False
