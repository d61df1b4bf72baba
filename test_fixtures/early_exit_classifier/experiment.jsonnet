// The tiny test configuration: the generated 4-layer BERT, heads on layers 0, 1 and 3.
local bert = "test_fixtures/tiny_bert";
{
  "dataset_reader": {
    "type": "early_exit_text_classification",
    "transformer_model": bert,
    "max_length": 32
  },
  "train_data_path": "test_fixtures/data/text_classification.tsv",
  "validation_data_path": "test_fixtures/data/text_classification.tsv",
  "model": {
    "type": "early_exit_classifier",
    "transformer_model": bert,
    "exit_layers": [0, 1, 3],
    "head_pooling": "mean",
    "dropout": 0.1
  },
  "data_loader": {"batch_size": 4, "shuffle": true},
  "trainer": {
    "optimizer": {"type": "huggingface_adamw", "lr": 1e-3},
    "num_epochs": 2,
    "cuda_device": -1,
    "validation_metric": "+accuracy"
  }
}
