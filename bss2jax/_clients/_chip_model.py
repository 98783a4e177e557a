"""`ChipModelClient`: the chip model in a separate process, behind the hardware contract.

It exercises the whole `Hardware` path without a chip: the request crosses a process
boundary as plain numpy, the worker rebuilds the network in chip units, runs
`ChipModel.record` (outside any `jit` of the caller) and answers with a `RawRecording`
like a chip's: CADC samples at irregular, jittered times, MADC samples at ~34 ns, spike
times on the 8 ns clock plus latency, membrane and read noise that differ between runs.
Optional wall-clock delays emulate the round trip and the (slow) reconfiguration.

The worker is one long-lived process (`python -m bss2jax._clients._worker`, started on the
first call; no re-import of the user's main module, so no `if __name__ == "__main__"`
guard is needed), so its compiled chip model is reused across calls. Requests and
recordings travel through its stdin/stdout in the safe recorded-run format (`.npz` +
JSON, no pickle), each message a 1-byte kind and an 8-byte length before the payload.
"""

from __future__ import annotations

import dataclasses
import json
import os
import select
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from .._errors import HardwareError, TransientHardwareError
from .._hardware._protocol import (
    AbstractClient,
    ExperimentRequest,
    RawRecording,
)

# --------------------------------------------------------------------------------------
# The wire: kind (1 byte) + length (8 bytes, little endian) + payload.

_REQUEST, _RECORDING, _ERROR, _CLOSE = b"Q", b"R", b"E", b"C"


def _write_message(stream, kind: bytes, payload: bytes) -> None:
    stream.write(kind + struct.pack("<Q", len(payload)) + payload)
    stream.flush()


def _read_exactly(fd: int, count: int, ready) -> bytes:
    chunks, remaining = [], count
    while remaining:
        ready()
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            raise EOFError("the chip-model worker closed its output")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _config_to_json(config) -> str:
    return json.dumps(dataclasses.asdict(config))


class ChipModelClient(AbstractClient):
    """The chip model (`bj.ChipModel`) in a separate worker process, as a hardware client.

    **Arguments:**
    - `chip`: a `bj.ChipInstance` (default: `ChipInstance.random(PRNGKey(seed))`, a
      calibrated chip with mismatch).
    - `config`: a `bj.ChipConfig` (default: the model's defaults: CADC every ~1.7 us with
      ±0.1 us jitter, MADC at ~34 ns, 80 ns spike latency, membrane and read noise).
    - `seed`: for the default chip and for the noise of runs whose request has no seed
      (then every run differs, as on a chip; with `run(..., key=key)` it is reproducible).
    - `latency`: wall-clock seconds added to every call (the host-FPGA round trip).
    - `reconfiguration_time`: wall-clock seconds added when the configuration is written
      (the chip's slow part; skipped when `request.reconfigure` is False and unchanged).
    - `platform`: JAX platform of the worker (default "cpu"; None: JAX's default).
    - `answer_timeout`: seconds one call may take in the worker (the first includes its
      start, imports and compilation) before the client gives up and ends the worker.

    The worker starts on the first call and is reused; `close()` (or a `with` block) ends
    it. A worker that dies raises `TransientHardwareError` (so `Hardware` retries) and is
    restarted on the next call; `cancel()` (called by `Hardware` on a timeout) ends it and
    confirms, so the client stays usable after a timeout.
    `calls`, `reconfigurations` and `warnings` (the chip model's, e.g. CADC range) count
    what the worker did.

    ```python
    with bj.ChipModelClient(seed=1) as client:
        out = bj.run(net, inputs, backend=bj.Hardware(client))
    ```
    """

    def __init__(
        self,
        chip=None,
        config=None,
        *,
        seed: int = 0,
        latency: float = 0.0,
        reconfiguration_time: float = 0.0,
        platform: str | None = "cpu",
        answer_timeout: float = 600.0,
    ):
        from .._chip._config import ChipConfig
        from .._chip._instance import ChipInstance

        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"`seed` must be an int; got {seed!r}.")
        for name, value in (
            ("latency", latency),
            ("reconfiguration_time", reconfiguration_time),
            ("answer_timeout", answer_timeout),
        ):
            if not (isinstance(value, (int, float)) and value >= 0):
                raise ValueError(
                    f"`{name}` must be a non-negative number of seconds; got {value!r}."
                )
        if chip is None:
            import jax

            chip = ChipInstance.random(jax.random.PRNGKey(seed))
        if not isinstance(chip, ChipInstance):
            raise TypeError(f"`chip` must be a bj.ChipInstance; got {type(chip).__name__}.")
        config = ChipConfig() if config is None else config
        if not isinstance(config, ChipConfig):
            raise TypeError(f"`config` must be a bj.ChipConfig; got {type(config).__name__}.")
        self.chip = chip
        self.config = config
        self.seed = seed
        self.latency = float(latency)
        self.reconfiguration_time = float(reconfiguration_time)
        self.platform = platform
        self.answer_timeout = float(answer_timeout)
        self.calls = 0
        self.reconfigurations = 0
        self.starts = 0
        self.warnings: list[str] = []
        self._process: Any = None
        self._folder: Any = None
        self._log: Any = None
        self._lock = threading.Lock()

    def _start(self) -> None:
        if self._log is not None:
            self._log.close()
        if self._folder is None:
            self._folder = tempfile.TemporaryDirectory(prefix="bss2jax-chip-client-")
            self.chip.save(os.path.join(self._folder.name, "chip.npz"))
        self._log = tempfile.TemporaryFile()
        command = [
            sys.executable,
            "-m",
            "bss2jax._clients._worker",
            os.path.join(self._folder.name, "chip.npz"),
            _config_to_json(self.config),
            str(self.seed),
            self.platform or "",
        ]
        self._process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log
        )
        self.starts += 1

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.kill()
            process.wait(10.0)
            for stream in (process.stdin, process.stdout):
                try:
                    stream.close()
                except OSError:
                    pass

    def _log_tail(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        text = self._log.read().decode(errors="replace").strip().splitlines()
        return "\n".join(text[-15:])

    @property
    def running(self) -> bool:
        """Whether the worker process is alive."""
        return self._process is not None and self._process.poll() is None

    def execute(self, request: ExperimentRequest) -> RawRecording:
        from .._hardware._files import RecordedRun, decode_run, encode_run

        with self._lock:
            if not self.running:
                self._stop()
                self._start()
            process = self._process
            if self.latency:
                time.sleep(self.latency)
            payload = struct.pack("<d", self.reconfiguration_time)
            payload += encode_run(RecordedRun(request, RawRecording()))
            deadline = time.monotonic() + self.answer_timeout
            fd = process.stdout.fileno()

            def ready():
                while not select.select([fd], [], [], 0.05)[0]:
                    if process.poll() is not None:
                        raise EOFError("the worker ended")
                    if time.monotonic() > deadline:
                        self._stop()
                        raise HardwareError(
                            f"the chip-model worker did not answer within {self.answer_timeout:g} "
                            "s (ChipModelClient(answer_timeout=...)); it was stopped."
                        )

            try:
                _write_message(process.stdin, _REQUEST, payload)
                head = _read_exactly(fd, 9, ready)
                (length,) = struct.unpack("<Q", head[1:])
                body = _read_exactly(fd, length, ready)
            except (EOFError, OSError) as error:
                code = process.poll()
                tail = self._log_tail()
                self._stop()
                raise TransientHardwareError(
                    f"the chip-model worker process ended (exit code {code}); it is restarted "
                    f"on the next call. Its last output:\n{tail}"
                ) from error
        if head[:1] == _ERROR:
            failure = json.loads(body.decode())
            raise HardwareError(
                f"the chip model raised {failure['name']}: {failure['message']}\n{failure['trace']}"
            )
        answer = decode_run(body, validate=False)
        self.calls += 1
        self.reconfigurations += bool(answer.info["reconfigured"])
        self.warnings.extend(answer.info["warnings"])
        return answer.recording

    def cancel(self) -> bool:
        """End the worker at once (a timed-out call) and confirm it (returns True).

        Safe to confirm: the killed worker can touch nothing more, the hung `execute` sees
        it end within 50 ms and fails, and every `execute` holds the client's lock, so the
        next call waits for the hung one to let go and then starts a new worker.
        """
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10.0)
        return True

    def close(self) -> None:
        """Stop the worker process and remove its files."""
        process = self._process
        if process is not None and process.poll() is None:
            try:
                _write_message(process.stdin, _CLOSE, b"")
                process.wait(5.0)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self._stop()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None

    def __del__(self):
        try:
            self._stop()
        except Exception:  # noqa: BLE001 - nothing to do at interpreter exit
            pass
