// snli, bert-base: the paper's early-exit setup.
local lib = import 'early_exit.libsonnet';
lib.experiment('snli', 'bert_base')
