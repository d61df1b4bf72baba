from early_exit.calibration.calibrated_archive import (
    store_temperatures_in_weights,
    write_calibrated_archive,
)
from early_exit.calibration.calibration_report import (
    CALIBRATION_REPORT_NAME,
    calibration_report,
    format_calibration_table,
    write_calibration_report,
)
from early_exit.calibration.temperature_scaling import (
    DEFAULT_MAX_TEMPERATURE,
    DEFAULT_MIN_TEMPERATURE,
    TemperatureFit,
    check_temperature_range,
    expected_calibration_error,
    fit_head_temperatures,
    fit_temperature,
    negative_log_likelihood,
)
from early_exit.calibration.compute_curves import (
    COMPUTE_CURVES_KEY,
    CURVE_POLICIES,
    compute_curves,
)
