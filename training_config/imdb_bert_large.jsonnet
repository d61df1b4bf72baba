// imdb, bert-large: the paper's early-exit setup.
local lib = import 'early_exit.libsonnet';
lib.experiment('imdb', 'bert_large')
