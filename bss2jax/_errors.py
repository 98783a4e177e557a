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
