"""Peak resident memory of this process.

`getrusage().ru_maxrss` survives exec on Linux: a stage started by a large parent (a test runner, a
notebook) would report the parent's peak. /proc/self/status VmHWM belongs to this address space only.
"""

import resource
import sys


def peak_rss_mb() -> float:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere
