// ag_news, bert-large: the standard baseline, one head on the last layer.
local lib = import 'early_exit.libsonnet';
lib.experiment('ag_news', 'bert_large', baseline=true)
