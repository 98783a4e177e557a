"""hxtorch's Yin-Yang example as a recipe: the network, its loss, its training phases, plots.

What `bss2jax train` runs, for scripts and notebooks to reuse:

```python
from bss2jax import yinyang
config = yinyang.YinYangConfig()
net = yinyang.yin_yang_network(config, key=jax.random.key(0))
loss = yinyang.YinYangLoss.from_config(config)
```

Network (hxtorch's `yinyang_model.py`): 5 inputs (x, y, 1-x, 1-y and a bias spike) → 120
LIF (leak and reset `Mixed(0, 80)`, threshold `Mixed(1, 150)`, tau_mem = tau_syn = 6 us)
→ 3 LI (leak `Mixed(0, 80)`, 6 us); decoded by max over time times `readout_scale`, trained
with cross-entropy. Coordinates are encoded between `t_early` and `t_late` on a `steps`
grid of `dt` (2 / 26 / bias 2 us, 38 steps of 1 us: hxtorch's defaults).
"""

from ._config import (
    CHIP_FINE_TUNING as CHIP_FINE_TUNING,
    CHIP_FINE_TUNING_THROUGH as CHIP_FINE_TUNING_THROUGH,
    CHIP_PRETRAINING as CHIP_PRETRAINING,
    CHIP_RANDOM as CHIP_RANDOM,
    EVENTPROP as EVENTPROP,
    YinYangConfig as YinYangConfig,
)
from ._plots import plot_curves as plot_curves, plot_decision_map as plot_decision_map
from ._recipe import (
    YinYangLoss as YinYangLoss,
    clip_weights as clip_weights,
    optimiser as optimiser,
    perturb as perturb,
    readout_weights as readout_weights,
    yin_yang_network as yin_yang_network,
)
