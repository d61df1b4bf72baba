// sst2, CPU-sized, DeeBERT's second stage: the encoder and the last head start from the first
// stage's weights and stay frozen (allennlp's `pretrained` initializer and `requires_grad: false`
// parameter group); the other heads train on the frozen encoder with a learning rate of their own.
// The first stage's weights: runs/sst2_minilm_deebert_stage1/best.th (override
// `model.initializer` for another place). Then temperatures are fitted as in every config.
// DeeBERT exits on entropy: predict with `--predictor-args '{"exit_policy": {"type": "entropy",
// "threshold": 0.3}}'`.
local lib = import 'early_exit.libsonnet';
lib.experiment('sst2', 'minilm', lr=1e-3, batch_size=32, num_epochs=1, loss_weights='all_but_last',
               frozen_from='runs/sst2_minilm_deebert_stage1/best.th')
