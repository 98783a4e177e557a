"""The README's example runs and does what its text says (the loss falls)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs_and_trains(capsys):
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python example"
    example = blocks[0]
    assert len(example.strip().splitlines()) <= 20
    namespace = {}
    # A user's script runs with JAX's default dtype promotion; the suite's strict setting
    # (conftest.py) is for the library's own code, and optax's Adam needs the default
    # (`decay ** count` mixes a float with the int32 step count).
    import jax

    with jax.numpy_dtype_promotion("standard"):
        exec(compile(example, str(README), "exec"), namespace)
    trained = float(capsys.readouterr().out.strip().splitlines()[-1])
    # The untrained readout is far from the sine target: compare against the initial loss.
    import equinox as eqx

    initial = namespace["loss"](
        eqx.partition(namespace["net"], namespace["bj"].trainable_filter(namespace["net"]))[0]
    )
    assert trained < 0.01 * float(initial)
