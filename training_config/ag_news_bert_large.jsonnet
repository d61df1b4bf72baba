// ag_news, bert-large: the paper's early-exit setup.
local lib = import 'early_exit.libsonnet';
lib.experiment('ag_news', 'bert_large')
