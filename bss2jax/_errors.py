"""Every error class of bss2jax, in one place.

Each message names the argument, the rule and the value received.
"""


class NetworkError(ValueError):
    """A network that cannot be built as described; the message says what to change."""


class BackendError(ValueError):
    """A network, input or option that this backend cannot handle; says what to change."""


class PlacementError(BackendError):
    """A network that does not fit the chip; names the limit and the numbers.

    ```python
    try:
        bj.place(net)
    except bj.PlacementError:
        placement = bj.place(net, partition=True)   # sequential runs instead
    ```
    """


class ChipInstanceError(ValueError):
    """A chip-instance file or array that is malformed; says what is wrong.

    ```python
    try:
        chip = bj.ChipInstance.load("chip-a.npz")
    except bj.ChipInstanceError as error:
        print(error)   # e.g. "'chip-a.npz': field 'leak' is missing."
    ```
    """


class NonFiniteError(FloatingPointError):
    """A training step gave a NaN or infinite loss, gradient update or parameter.

    `fit(..., on_nonfinite="raise")` (the default) stops with this error before anything
    non-finite reaches a checkpoint; `on_nonfinite="skip"` drops such steps instead.

    ```python
    try:
        bj.fit(net, loss, optax.adam(1e3), train, epochs=1, batch_size=50, key=key)
    except bj.NonFiniteError as error:
        print(error)   # names the epoch, the batch and the non-finite values
    ```
    """


class OutputFolderError(ValueError):
    """An output folder (`fit(output=...)`, `Hardware(record_to=...)`, a file's folder)
    that cannot be created or written; checked before any work is done.

    ```python
    try:
        bj.Hardware(client, record_to="/read-only/session")
    except bj.OutputFolderError as error:
        print(error)   # names the argument, the folder and the reason
    ```
    """


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or does not fit: corrupt, truncated, written by
    another run, or holding non-finite values; the message names the file.

    ```python
    try:
        tree, meta = bj.load_checkpoint("out/checkpoint.npz", (net, opt_state))
    except bj.CheckpointError as error:
        print(error)
    ```
    """


class HardwareError(RuntimeError):
    """A hardware run failed: the client raised, timed out, or returned malformed data.

    The message names the cause. Outside `jit` it is raised as is; under `jit` JAX re-raises
    a host-callback failure as `jax.errors.JaxRuntimeError`, whose message contains
    `HardwareError: <cause>`.

    ```python
    try:
        out = bj.run(net, x, backend=bj.Hardware(client))
    except bj.HardwareError as error:
        print("chip run failed:", error)
    ```
    """


class TransientHardwareError(HardwareError):
    """A failure that may pass when retried (a lost connection, a busy system).

    Clients raise it to ask `Hardware` for a retry (`retries=`); other errors are final.

    ```python
    raise bjh.TransientHardwareError("FPGA busy")   # inside a client's execute
    ```
    """


class HardwareTimeoutError(HardwareError):
    """The client did not answer within `Hardware(timeout=...)` seconds.

    ```python
    backend = bj.Hardware(client, timeout=60.0)   # a slower call raises this error
    ```
    """


class ClientBusyError(HardwareError):
    """The client is still busy with a call that timed out: `Hardware` sends one experiment
    at a time, so the client stays unusable until that call returns or the client's
    `cancel()` returns True (it confirmed the call stopped).

    ```python
    try:
        out = bj.run(net, x, backend=backend)
    except bj.ClientBusyError:
        time.sleep(60)   # wait for the hung call to end, then retry
    ```
    """


class RecordingFileError(HardwareError):
    """A recorded-run file that cannot be read: wrong format, version, or contents.

    ```python
    try:
        run = bjh.load_run("run-000000.npz")
    except bj.RecordingFileError as error:
        print(error)   # names the file and what is wrong with it
    ```
    """


class ReplayError(HardwareError):
    """No recorded run answers a request (a different network, input, seed or order).

    ```python
    bj.Replay("session").observe(other_net, x, dt=1e-6, key=None)   # raises ReplayError
    ```
    """


class CalibrationMismatchError(HardwareError):
    """The chip runs other neuron settings than the request asked for.

    With a calibration file, hxtorch replaces every population's hardware values by the
    file's targets (`ExecutionInstance.calibrate` → `Population.params_from_calibration`,
    hxtorch@3bfc7aa `execution_instance.py`, `modules/types.py`). `HxtorchClient` reads
    them back after the first run of each configuration and raises this error, naming
    each setting, when they differ from the request.
    """


class SelfTestError(HardwareError):
    """`HxtorchClient.self_test` found the chip not behaving as expected.

    `cause` names the likely cause: "value offset", "calibration override", "leak",
    "time offset", "PSP sign", "no PSP", "PSP size" or "MADC"; the message says what was
    measured and what was expected.
    """

    def __init__(self, cause: str, message: str):
        super().__init__(f"self-test failed ({cause}): {message}")
        self.cause = cause
