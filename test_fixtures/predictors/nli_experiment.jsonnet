// A tiny NLI configuration for predictor tests: the generated 4-layer BERT, heads on layers 0 and 3.
local bert = "test_fixtures/tiny_bert";
{
  "dataset_reader": {
    "type": "early_exit_nli",
    "transformer_model": bert,
    "max_length": 48
  },
  "train_data_path": "test_fixtures/data/nli.tsv",
  "validation_data_path": "test_fixtures/data/nli.tsv",
  "model": {
    "type": "early_exit_classifier",
    "transformer_model": bert,
    "exit_layers": [0, 3],
    "head_pooling": "cls",
    "dropout": 0.1
  },
  "data_loader": {"batch_size": 4, "shuffle": true},
  "trainer": {
    "optimizer": {"type": "huggingface_adamw", "lr": 1e-3},
    "num_epochs": 1,
    "cuda_device": -1
  }
}
