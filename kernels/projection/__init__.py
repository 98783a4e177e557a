"""Input projection of spikes through a weight matrix: dense, or from active inputs only.

`reference.project` is the dense product; `events` holds the `Events` format and the
gather / scatter-add kernels; `wrapper.project` picks one and owns the custom VJP.
"""

from .events import (
    Events as Events,
    counts as counts,
    from_dense as from_dense,
    from_numpy as from_numpy,
    round_capacity as round_capacity,
)
from .wrapper import (
    EVENT_FRACTION as EVENT_FRACTION,
    METHODS as METHODS,
    project as project,
    uses_events as uses_events,
)
