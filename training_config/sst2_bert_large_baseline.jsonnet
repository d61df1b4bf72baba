// sst2, bert-large: the standard baseline, one head on the last layer.
local lib = import 'early_exit.libsonnet';
lib.experiment('sst2', 'bert_large', baseline=true)
