// sst2, bert-base: the paper's early-exit setup.
local lib = import 'early_exit.libsonnet';
lib.experiment('sst2', 'bert_base')
