"""
Nested overrides for this package's blocks: `-o '{"model": {"confidence_threshold": 0.8}}'`.

allennlp 2.10 applies a nested override by replacing the whole block: the override above would
leave a `model` block with no `type` and no `transformer_model`, and loading the archive fails with
`KeyError: 'type'`. Only the dot syntax (`-o '{"model.confidence_threshold": 0.8}'`) merges.

Importing `early_exit` wraps allennlp's `with_overrides` (the function `Params.from_file` applies
overrides with, so `allennlp predict`, `evaluate`, `train` and `Predictor.from_path` all get it) so
that a nested override *without* a `type` of a block whose `type` is one of this package's
(`early_exit_...`) is merged key by key, exactly as its dot-syntax spelling would be. Everything
else keeps allennlp's behaviour: a nested override with its own `type` still replaces the block, and
blocks of other packages are never touched.

An exit policy given in the overrides replaces the block's: `confidence_threshold` (the shorthand
for a `max_probability` policy) and `exit_policy` are one setting spelled two ways, so overriding
one clears the other that the configuration (an archive calibrated with `--max-accuracy-drop`
stores an `exit_policy`) holds. Both in the overrides is still the model's "not both" error.
"""

from typing import Any, Dict

PACKAGE_TYPE_PREFIX = "early_exit_"
# The two spellings of a block's exit policy: setting one replaces the other.
POLICY_KEYS = ("confidence_threshold", "exit_policy")


def _is_package_block(block: Any) -> bool:
    return (
        isinstance(block, dict)
        and isinstance(block.get("type"), str)
        and block["type"].startswith(PACKAGE_TYPE_PREFIX)
    )


def _flatten(original: Any, override: Dict[str, Any], prefix: str) -> Dict[str, Any]:
    """
    `{"a": {"b": 1}}` under `prefix` as dot-syntax keys, descending while `original` has dicts.
    """
    flat: Dict[str, Any] = {}
    for key, value in override.items():
        inner = original.get(key) if isinstance(original, dict) else None
        if isinstance(value, dict) and isinstance(inner, dict) and "type" not in value:
            flat.update(_flatten(inner, value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def merge_package_blocks(original: Dict[str, Any], overrides: Dict[str, Any]) -> Dict[str, Any]:
    """
    Rewrites top-level nested overrides of this package's blocks into dot syntax.

    # Parameters

    original : `Dict[str, Any]`
        The configuration the overrides apply to (an archive's `config.json`, a training config).
    overrides : `Dict[str, Any]`
        The parsed overrides, e.g. `{"model": {"confidence_threshold": 0.8}}`.

    # Returns

    `Dict[str, Any]`
        The overrides with every `{"<key>": {...}}` whose `original[<key>]` is an `early_exit_...`
        block and whose value has no `type` spelled as `<key>.<name>` entries; others unchanged.
    """
    rewritten: Dict[str, Any] = {}
    for key, value in overrides.items():
        block = original.get(key) if isinstance(original, dict) else None
        if isinstance(value, dict) and "type" not in value and _is_package_block(block):
            rewritten.update(_flatten(block, value, f"{key}."))
        else:
            rewritten[key] = value
    return _policy_replaced(original, rewritten)


def _policy_replaced(original: Dict[str, Any], overrides: Dict[str, Any]) -> Dict[str, Any]:
    """`overrides` plus `<key>.<other spelling>: None` where they set one spelling of a package
    block's exit policy and the block holds the other."""
    cleared: Dict[str, Any] = {}
    for key, block in original.items():
        if not _is_package_block(block):
            continue
        given = [name for name in POLICY_KEYS if f"{key}.{name}" in overrides]
        if len(given) == 1:
            (other,) = set(POLICY_KEYS) - set(given)
            if block.get(other) is not None:
                cleared[f"{key}.{other}"] = None
    return {**overrides, **cleared}
