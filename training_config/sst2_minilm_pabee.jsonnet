// sst2, CPU-sized, with PABEE's recipe (Zhou et al., 2020, "BERT Loses Patience"): the
// depth-weighted loss (head j weighted (layer_j + 1) / sum over heads, so deeper heads count more).
// Predict with PABEE's exit policy: `--predictor-args '{"exit_policy": {"type": "patience",
// "patience": 2}}'` (training validates the full model, as every config here). Otherwise as
// sst2_minilm.jsonnet, without self-distillation (PABEE has none).
local lib = import 'early_exit.libsonnet';
lib.experiment('sst2', 'minilm', lr=1e-4, head_lr=1e-3, batch_size=32, num_epochs=1,
               loss_weights='depth')
