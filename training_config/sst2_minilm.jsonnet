// sst2, CPU-sized: the offline all-MiniLM-L6-v2 encoder with a head on every layer
// Mean-pooled heads and self-distillation of the early heads from the last one: on this encoder
// the paper's cls_pooler heads learn far less on the early layers (see docs/results.md).
local lib = import 'early_exit.libsonnet';
lib.experiment('sst2', 'minilm', lr=5e-5, distillation_weight=1.0, batch_size=32, num_epochs=2)
