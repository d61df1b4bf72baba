// snli, CPU-sized: the offline all-MiniLM-L6-v2 encoder with a head on every layer
// Mean-pooled heads (the paper's cls_pooler heads learn far less on the early layers), their own
// learning rate of 1e-3 (with few training steps the early heads otherwise stay under-trained) and
// self-distillation of the early heads from the last one.
// Four epochs: the CPU-sized training sets are small, and the early heads keep improving.
// Encoder lr 1e-4, twice the paper's largest: the recipe search's rule picked it over 5e-5 on dev
// (the exits come earlier there at a full-depth accuracy within its margin). Each choice against
// one change at a time: docs/recipe_search.md (scripts/recipe_search.py).
local lib = import 'early_exit.libsonnet';
lib.experiment('snli', 'minilm', lr=1e-4, head_lr=1e-3, distillation_weight=1.0, batch_size=32, num_epochs=4)
