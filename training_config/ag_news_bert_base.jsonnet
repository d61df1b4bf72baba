// ag_news, bert-base: the paper's early-exit setup.
local lib = import 'early_exit.libsonnet';
lib.experiment('ag_news', 'bert_base')
