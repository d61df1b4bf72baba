from early_exit.training.metrics import *  # noqa: F401,F403
from early_exit.training.callbacks import *  # noqa: F401,F403
