"""early_exit: early-exit transformer classifiers for AllenNLP.

Importing this package registers every component (dataset readers, model, predictor, metrics,
callbacks and subcommands), so `--include-package early_exit` (or the repo's `.allennlp_plugins`)
is all AllenNLP needs.
"""

from early_exit.dataset_readers import *  # noqa: F401,F403
from early_exit.metrics import *  # noqa: F401,F403
from early_exit.models import *  # noqa: F401,F403
from early_exit.training import *  # noqa: F401,F403
from early_exit.predictors import *  # noqa: F401,F403
from early_exit.commands import *  # noqa: F401,F403

from early_exit import allennlp_patches

allennlp_patches.install()
