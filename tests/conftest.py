import os
import tempfile

# Nothing may be fetched from a model hub while testing: every test uses the tiny local BERT.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Forked data-loader workers and the fast tokenizers' own threads do not mix; keep the logs quiet.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The onnxruntime layer runner's exported graphs: one folder for the run, never the user's cache.
os.environ.setdefault("EARLY_EXIT_CACHE", tempfile.mkdtemp(prefix="early_exit_test_cache_"))

# Property-based tests (hypothesis): the same examples on every run, no example database written
# and no per-example deadline (timings vary on shared machines). `HYPOTHESIS_PROFILE=explore`
# searches more widely and at random.
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "default",
    max_examples=40,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("explore", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
