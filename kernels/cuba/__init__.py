"""Current-based (CUBA) AdEx / LIF / LI integration on a fixed time grid."""

from .reference import (
    CubaCoefficients as CubaCoefficients,
    CubaFlags as CubaFlags,
    CubaParams as CubaParams,
    CubaState as CubaState,
    HardwareStep as HardwareStep,
    StepOutput as StepOutput,
    coefficients as coefficients,
    init_state as init_state,
    inject as inject,
    integrate as integrate,
    step as step,
    step_with as step_with,
)
