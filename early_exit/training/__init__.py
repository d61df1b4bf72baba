from early_exit.training.callbacks import *  # noqa: F401,F403
