import pytest
import torch
import transformers

DISTILBERT = dict(vocab_size=120, dim=32, n_layers=4, n_heads=2, hidden_dim=37)


@pytest.fixture(scope="session")
def tiny_distilbert(tmp_path_factory) -> str:
    """A randomly initialised 4-layer DistilBERT, saved: each runner's second family."""
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("distilbert")
    config = transformers.DistilBertConfig(**DISTILBERT)
    transformers.AutoModel.from_config(config).save_pretrained(str(directory))
    return str(directory)
