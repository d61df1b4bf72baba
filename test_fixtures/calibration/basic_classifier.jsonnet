// A model of another type than early_exit_classifier (allennlp's basic_classifier on the tiny
// BERT), for the error of `allennlp calibrate` on an archive it cannot calibrate.
local bert = "test_fixtures/tiny_bert";
{
  "dataset_reader": {
    "type": "early_exit_text_classification",
    "transformer_model": bert,
    "max_length": 32
  },
  "train_data_path": "test_fixtures/data/text_classification.tsv",
  "model": {
    "type": "basic_classifier",
    "text_field_embedder": {
      "token_embedders": {"tokens": {"type": "pretrained_transformer", "model_name": bert}}
    },
    "seq2vec_encoder": {"type": "cls_pooler", "embedding_dim": 32}
  },
  "data_loader": {"batch_size": 8},
  "trainer": {"optimizer": {"type": "adam", "lr": 1e-3}, "num_epochs": 1, "cuda_device": -1}
}
