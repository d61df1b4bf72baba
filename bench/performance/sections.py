"""One dataset's section of the report: accuracy and the oracle, model time, end to end, memory."""

from typing import Any, Dict, List

from bench.performance.settings import LARGE_BATCH, PADDED, PLANS
from bench.performance.tables import drop_label, e2e_run, model_row, table, thresholds_of


def dataset_section(result: Dict[str, Any]) -> str:
    parts = [header(result), accuracy_section(result), model_time_section(result)]
    if "e2e" in result:
        parts.append(e2e_section(result))
    if "memory" in result:
        parts.append(memory_section(result))
    return "\n".join(parts)


def header(result: Dict[str, Any]) -> str:
    accuracy = result["accuracy"]
    return "\n".join(
        [
            f"## {result['name']}",
            "",
            f"Archive `{result['archive']}` (exit layers {accuracy['exit_layers']} of "
            f"{accuracy['full_depth']}); dev `{result['dev']}` ({accuracy['dev_instances']} "
            f"instances), evaluation `{result['eval']}` ({accuracy['eval_instances']} instances, "
            f"{result['mean_tokens_eval']:.1f} wordpieces on average). Reference: "
            f"`{result['transformers_class']}` from `{result['encoder']}` (attention: "
            f"{result['attention']['transformers']}; early-exit encoder: "
            f"{result['attention']['early_exit']}).",
            "",
        ]
    )


def accuracy_section(result: Dict[str, Any]) -> str:
    accuracy = result["accuracy"]
    full = accuracy["eval_full_accuracy"]
    rows = [["full model", "1", "-", f"{full:.4f}", "-", "1.000", "-", "-"]]
    for drop, entry in accuracy["chosen"].items():
        compute, oracle = entry["eval_relative_compute"], entry["oracle_relative_compute"]
        rows.append(
            [
                f"within {float(drop) * 100:g} pt on dev",
                f"{entry['threshold']:g}",
                f"{entry['dev_accuracy']:.4f}" if entry["dev_accuracy"] is not None else "-",
                f"{entry['eval_accuracy']:.4f}",
                f"{(entry['eval_accuracy'] - full) * 100:+.2f} pt",
                f"{compute:.3f}",
                f"{oracle:.3f}",
                f"{compute / oracle:.2f}x (+{compute - oracle:.3f})" if oracle == oracle else "-",
            ]
        )
    oracle = accuracy["oracle"]
    return "\n".join(
        [
            "### Thresholds, accuracy and the oracle (evaluation file)",
            "",
            table(
                [
                    "",
                    "threshold",
                    "dev accuracy",
                    "eval accuracy",
                    "vs full model",
                    "relative compute",
                    "oracle compute at that accuracy",
                    "policy / oracle",
                ],
                rows,
            ),
            "",
            f"The oracle exits every instance at the first head that gets it right and charges "
            f"the {oracle['unsolved_fraction']:.1%} that no head gets right to the first head; "
            f"unconstrained it reaches accuracy {oracle['accuracy']:.4f} at relative compute "
            f"{oracle['relative_compute']:.3f}. \"Oracle compute at that accuracy\" is the least "
            "compute any exit policy over these heads needs for the policy's accuracy: the "
            "instances cheapest to get right exit at their first correct head, the others at the "
            "first head. Thresholds are chosen on the dev file with `recommend_threshold` (the "
            "cheapest within the drop); accuracy drops are measured on the evaluation file.",
            "",
        ]
    )


def model_time_section(result: Dict[str, Any]) -> str:
    rows = []
    for batch_size, batching in PLANS:
        first = model_row(result, batch_size, batching, 1.0)
        rows.append(
            [batch_size, batching, "transformers", "-",
             f"{first['transformers_ms_per_instance']:.2f}", "-", "-", "-", "-", "-", "-"]
        )  # fmt: skip
        for threshold in thresholds_of(result):
            rows.append(model_time_row(result, batch_size, batching, threshold))
    large = {
        row["batching"]: row
        for row in result["model_time"]
        if row["batch_size"] == LARGE_BATCH and row["threshold"] == 1.0
    }
    return "\n".join(
        [
            "### Model time",
            "",
            table(
                [
                    "batch size",
                    "batching",
                    "model",
                    "within (dev)",
                    "ms / instance",
                    "relative compute",
                    "ideal speedup",
                    "speedup",
                    "speedup / ideal",
                    "token-weighted ideal",
                    "speedup / token-weighted",
                ],
                rows,
                text_columns=4,
            ),
            "",
            f"{result['model_time_instances']} evaluation instances. Tokens computed per real "
            f"token at batch size 32: {large[PADDED]['padded_tokens_per_token']:.2f} padded "
            f"({large[PADDED]['forward_passes']} forward passes), 1.00 packed (one pass per "
            "layer; only the attention sees padding). Padded, the early-exit model also drops the "
            "padding its longest rows needed once they exit, which the full model keeps "
            "computing, so its speedup can exceed the layer count. Packed, the full model wastes "
            "no padding either, and every layer is one pass over all running tokens. Packed and "
            "carried, the batches are one stream: the rows that go on past a head wait until rows "
            "with 2,048 tokens wait for their next layer, instead of running on what is left of "
            "one batch; at the end of the stream whatever waits runs (the timed stream is short, "
            "so that end weighs more than in a long file). At threshold 1.0 nothing waits, and "
            "the full model is the packed one.",
            "",
        ]
    )


def model_time_row(result, batch_size, batching, threshold) -> List[Any]:
    row = model_row(result, batch_size, batching, threshold)
    cells = [
        batch_size, batching, f"early exit {threshold:g}", drop_label(result, threshold),
        f"{row['ms_per_instance']:.2f}", f"{row['relative_compute']:.3f}",
        f"{row['ideal_speedup']:.2f}x", f"{row['speedup']:.2f}x", f"{row['efficiency']:.0%}",
        f"{row['token_weighted_ideal_speedup']:.2f}x",
        f"{row['speedup'] / row['token_weighted_ideal_speedup']:.0%}",
    ]  # fmt: skip
    if threshold == 1.0:
        cells[-3:] = [f"{row['overhead_vs_transformers']:.3f}x transformers", "-", "-"]
    return cells


def e2e_section(result: Dict[str, Any]) -> str:
    e2e = result["e2e"]
    rows = []
    for batch_size in (1, LARGE_BATCH):
        for threshold in thresholds_of(result):
            row = e2e_run(result, batch_size, threshold)
            rows.append(
                [batch_size, f"{threshold:g}", f"{row['relative_compute']:.3f}",
                 f"{row['ms_per_instance_with_startup']:.2f}",
                 f"{row['ms_per_instance']:.2f}",
                 f"{row['model_ms_per_instance']:.2f}",
                 f"{row['ms_per_instance'] - row['model_ms_per_instance']:.2f}",
                 f"{row['speedup_with_startup']:.2f}x",
                 f"{row['speedup']:.2f}x",
                 f"{row['model_speedup']:.2f}x",
                 f"{row['speedup'] / row['model_speedup']:.0%}" if threshold != 1.0 else "-"]
            )  # fmt: skip
    differing = ", ".join(
        f"{count} at {threshold}"
        for threshold, count in e2e["lines_differing_between_batch_sizes"].items()
    )
    first = e2e["runs"][0]
    distinct = first.get("distinct_instances", first["instances"])
    repeated = f" (its {distinct} records, repeated)" if distinct < first["instances"] else ""
    return "\n".join(
        [
            "### End to end (`allennlp predict`)",
            "",
            table(
                [
                    "batch size",
                    "threshold",
                    "relative compute",
                    "ms / line (with start-up)",
                    "ms / line (prediction loop)",
                    "of which the model",
                    "of which the rest",
                    "speedup (with start-up)",
                    "speedup (prediction loop)",
                    "model-time speedup (same batches)",
                    "kept",
                ],
                rows,
            ),
            "",
            f"{first['instances']} lines of the evaluation file{repeated} as JSONL, `--silent`, "
            "one subprocess per run. The prediction loop (reading the lines, making instances, "
            "batching, the model, writing the output) is timed inside the command "
            '(`bench/timed_predict.py`), and within it the model\'s forward passes: "kept" sets '
            "the loop's speedup against the model-time speedup of those same batches in the same "
            "runs (not against the model-time table above, which times other instances in other "
            "batches). The start-up before the loop (imports, loading the archive) "
            f"took {e2e['startup_seconds']:.2f} s (median). Lines whose label or exit layer "
            f"differ between batch size 1 and 32: {differing}.",
            "",
        ]
    )


def memory_section(result: Dict[str, Any]) -> str:
    rows = []
    for row in result["memory"]:
        increase = row["inference_increase_mib"]
        rows.append(
            [
                row["model"],
                "-" if row["threshold"] is None else f"{row['threshold']:g}",
                f"{row['rss_before_mib']:.0f}",
                f"{row['peak_rss_mib']:.0f}",
                "-" if increase is None else f"{increase:.0f}",
                f"{row['process_max_rss_mib']:.0f}",
            ]
        )
    return "\n".join(
        [
            "### Peak memory at batch size 32",
            "",
            table(
                [
                    "model",
                    "threshold",
                    "RSS before inference (MiB)",
                    "peak RSS during inference (MiB)",
                    "inference increase (MiB)",
                    "process peak incl. loading (MiB)",
                ],
                rows,
                text_columns=2,
            ),
            "",
            "Resident set size of a fresh process per row (Linux `/proc/self/status`): `VmRSS` "
            "after loading the model and batching the inputs, then `VmHWM` after one pass over "
            f"the first {result['memory'][0]['instances']} evaluation instances in batches of 32 "
            "(file order; the early-exit model packs them), the peak having been reset by writing "
            "5 to `/proc/self/clear_refs`; the last column is `ru_maxrss`, which includes loading "
            "the archive. tracemalloc would not see torch's CPU allocations.",
            "",
        ]
    )
