// sst2, CPU-sized, DeeBERT's first stage (Xin et al., 2020): the encoder and the last head are
// fine-tuned alone (the other heads' losses weighted 0), as a standard classifier would be. Train it
// into runs/sst2_minilm_deebert_stage1, then sst2_minilm_deebert_stage2.jsonnet (see docs/training.md).
local lib = import 'early_exit.libsonnet';
lib.experiment('sst2', 'minilm', lr=1e-4, batch_size=32, num_epochs=1, loss_weights='last')
