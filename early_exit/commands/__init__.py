from early_exit.commands.calibrate import Calibrate
from early_exit.commands.sweep_thresholds import SweepThresholds
