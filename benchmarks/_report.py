"""What every benchmark script reports about the machine, and how it writes its JSON.

Imported by the scripts beside it (each puts this folder on `sys.path`).
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or `platform.processor()` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine() -> dict:
    """The `jax`, `device`, `cpu` and `python` entries every report carries."""
    import jax

    return {
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
        "cpu": cpu_model(),
        "python": platform.python_version(),
    }


def peak_rss_bytes() -> int:
    """This process's peak resident memory (`VmHWM` in /proc/self/status; `ru_maxrss`
    elsewhere), in bytes."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def emit(report: dict, output: str | os.PathLike | None) -> dict:
    """Print `report` as JSON and, with `output`, write it there atomically (a temporary
    file beside it, then `os.replace`: never a half-written file). Returns `report`."""
    text = json.dumps(report, indent=2) + "\n"
    print(text, end="")
    if output:
        path = Path(output)
        handle, temporary = tempfile.mkstemp(dir=path.parent or ".", prefix=f".{path.name}.")
        try:
            with os.fdopen(handle, "w") as file:
                file.write(text)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    return report
