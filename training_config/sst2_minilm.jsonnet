// sst2, CPU-sized: the offline all-MiniLM-L6-v2 encoder with a head on every layer
// Mean-pooled heads (the paper's cls_pooler heads learn far less on the early layers), their own
// learning rate of 1e-3 (with few training steps the early heads otherwise stay under-trained) and
// self-distillation of the early heads from the last one, its distribution softened at temperature 2.
// One epoch over all of GLUE's SST-2 train (67k sentences) is the CPU-sized budget.
// Encoder lr 1e-4, twice the paper's largest: on this small encoder and budget the exits come
// earlier on dev at about the same full-depth accuracy there. Each choice against its alternative,
// chosen on dev: docs/recipe_search.md (scripts/recipe_search.py) and docs/results.md's variants.
local lib = import 'early_exit.libsonnet';
lib.experiment('sst2', 'minilm', lr=1e-4, head_lr=1e-3, distillation_weight=1.0,
               distillation_temperature=2.0, batch_size=32, num_epochs=1)
