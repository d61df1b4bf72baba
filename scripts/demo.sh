#!/usr/bin/env bash
# The main job (`make demo`): train an early-exit classifier on the committed SST-2 sample with the
# offline all-MiniLM-L6-v2 encoder (a head on each of its 6 layers), calibrate every head (training
# callback), evaluate, sweep the confidence threshold, print the speed/accuracy table and write the
# plot. It writes only under its output folder; `make docs` (DEMO_UPDATE_DOCS=1) also regenerates
# docs/demo.md's demo section and docs/demo/ (the README's plot) from the outputs (a maintainer's
# step: it changes tracked files).
#
# Environment: DEMO_OUTPUT (default demo_output/), DEMO_EPOCHS (default 2), DEMO_REPEATS (default 5),
# DEMO_UPDATE_DOCS (default 0).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
OUT=${DEMO_OUTPUT:-demo_output}
EPOCHS=${DEMO_EPOCHS:-2}
REPEATS=${DEMO_REPEATS:-5}
TRAIN=data/sst2_sample/train.tsv
DEV=data/sst2_sample/dev.tsv
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
start=$(date +%s)

# Only what this script itself wrote before is replaced.
mkdir -p "$OUT"
rm -rf "$OUT/model" "$OUT/sweep" "$OUT/evaluate_full.json" "$OUT/evaluate_recommended.json"

echo ">> [1/4] training on $(wc -l < $TRAIN) SST-2 sentences, validating and calibrating on $(wc -l < $DEV)"
"$PY" -m allennlp train training_config/sst2_minilm.jsonnet -s "$OUT/model" \
    --include-package early_exit --file-friendly-logging \
    -o "{\"train_data_path\": \"$TRAIN\", \"validation_data_path\": \"$DEV\", \"trainer.num_epochs\": $EPOCHS}" \
    2>&1 | grep -E "gradient_descent_trainer - Epoch [0-9]+/|console_logger - +(Training|accuracy|ece |relative)|temperature_calibration - Calibrated|Error" \
    | sed -E 's/^[0-9-]+ [0-9:,]+ - INFO - [a-z_.]+ - //' || true
test -f "$OUT/model/model.tar.gz" || { echo "!! training failed, see $OUT/model/out.log" >&2; exit 1; }

echo ">> [2/4] sweeping the confidence threshold (every head once, then timing real early exit)"
"$PY" -m allennlp sweep-thresholds "$OUT/model/model.tar.gz" "$DEV" --output-dir "$OUT/sweep" \
    --include-package early_exit --max-accuracy-drop 0.01 --risk none --repeats "$REPEATS" \
    | tee "$OUT/sweep.summary.tmp"
mv "$OUT/sweep.summary.tmp" "$OUT/sweep/summary.md"

THRESHOLD=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['recommendations'][0]['threshold'])" "$OUT/sweep/sweep.json")
echo ">> [3/4] evaluating at threshold 1.0 (full model) and at the recommended $THRESHOLD"
"$PY" -m allennlp evaluate "$OUT/model/model.tar.gz" "$DEV" --include-package early_exit \
    --output-file "$OUT/evaluate_full.json" -o '{"model.confidence_threshold": 1.0}' >/dev/null 2>&1
"$PY" -m allennlp evaluate "$OUT/model/model.tar.gz" "$DEV" --include-package early_exit \
    --output-file "$OUT/evaluate_recommended.json" \
    -o "{\"model.confidence_threshold\": $THRESHOLD}" >/dev/null 2>&1

if [ "${DEMO_UPDATE_DOCS:-0}" = 1 ]; then
    echo ">> [4/4] updating docs/demo.md and docs/demo/"
    "$PY" scripts/update_readme_demo.py "$OUT" "$(( $(date +%s) - start ))"
else
    echo ">> [4/4] done (\`make docs\` would copy these results into docs/demo.md and docs/demo/)"
fi

echo
echo "Done in $(( $(date +%s) - start )) s. Outputs:"
echo "  model archive (temperatures inside):  $OUT/model/model.tar.gz"
echo "  calibration report:                   $OUT/model/calibration.json"
echo "  sweep table / plot / summary:         $OUT/sweep/sweep.md, sweep.csv, sweep.png, sweep.json"
echo "  evaluation at 1.0 / recommended:      $OUT/evaluate_full.json, $OUT/evaluate_recommended.json"
[ "${DEMO_UPDATE_DOCS:-0}" = 1 ] && echo "  demo page and copies:                 docs/demo.md, docs/demo/"
true
