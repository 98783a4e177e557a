"""Training: the train step, evaluation, checkpoints, `fit`, losses."""

from ._checkpoint import load_checkpoint as load_checkpoint, save_checkpoint as save_checkpoint
from ._evaluate import evaluate as evaluate, evaluate_backends as evaluate_backends
from ._fit import FitResult as FitResult, fit as fit
from ._step import TrainStep as TrainStep, make_train_step as make_train_step
