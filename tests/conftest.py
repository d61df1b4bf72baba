import os

# Nothing may be fetched from a model hub while testing: every test uses the tiny local BERT.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Forked data-loader workers and the fast tokenizers' own threads do not mix; keep the logs quiet.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
