"""Peak memory of one call: NumPy allocations (tracemalloc) and the rise of the resident set
(Linux: VmHWM after /proc/self/clear_refs; elsewhere ru_maxrss), for the network benchmark."""
import os
import re
import sys
import tracemalloc


def traced_peak(step):
    """Peak bytes NumPy allocated (tracemalloc) during one call of ``step``, after two."""
    step()
    step()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        step()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def _proc_status_kib(field):
    with open("/proc/self/status") as status:
        return int(re.search(rf"^{field}:\s+(\d+) kB", status.read(), re.M).group(1))


def rss_peak_here(step):
    """(bytes, method): how far this process's resident set rises above its level before one
    call of ``step``. Linux: after two calls, the peak (VmHWM) is reset through
    /proc/self/clear_refs and the third call is measured; elsewhere the rise of ru_maxrss over
    the first call (compilation included). Meant for a fresh process."""
    if os.access("/proc/self/clear_refs", os.W_OK):
        step()
        step()
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")   # resets the peak resident set to the current one
        base = _proc_status_kib("VmRSS")
        step()
        return (_proc_status_kib("VmHWM") - base) * 1024, "VmHWM - VmRSS"
    import resource
    scale = 1 if sys.platform == "darwin" else 1024   # ru_maxrss: bytes on macOS, else KiB
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step()
    return ((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * scale,
            "ru_maxrss, first step")
