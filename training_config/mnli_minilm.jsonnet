// mnli, CPU-sized: the offline all-MiniLM-L6-v2 encoder with a head on every layer
// (mean-pooled heads: the paper's cls_pooler heads stayed at chance level on the early layers of
// this encoder, see docs/results.md).
local lib = import 'early_exit.libsonnet';
lib.experiment('mnli', 'minilm', lr=5e-5, batch_size=32, num_epochs=1)
