"""early_exit: early-exit transformer classifiers for AllenNLP.

Importing this package registers every component (dataset readers, model, predictor, metrics,
callbacks and subcommands), so `--include-package early_exit` (or the repo's `.allennlp_plugins`)
is all AllenNLP needs.
"""

from early_exit.dataset_readers import *  # noqa: F401,F403
from early_exit.models import *  # noqa: F401,F403
from early_exit.training import *  # noqa: F401,F403
from early_exit.predictors import *  # noqa: F401,F403
from early_exit.commands import *  # noqa: F401,F403

from early_exit.common.archive_errors import install_archive_errors
from early_exit.common.cli_errors import install_cli_error_hook
from early_exit.common.encoder_files import install_encoder_archiving
from early_exit.dataset_readers.label_check import install_label_check
from early_exit.common.overrides import install_nested_override_merge
from early_exit.predictors.predict_manager import install_carried_predict

install_cli_error_hook()
install_encoder_archiving()
install_archive_errors()
install_label_check()
install_nested_override_merge()
install_carried_predict()
