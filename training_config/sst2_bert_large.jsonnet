// sst2, bert-large: the paper's early-exit setup.
local lib = import 'early_exit.libsonnet';
lib.experiment('sst2', 'bert_large')
