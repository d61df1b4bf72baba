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

An override that sets nothing (`-o '{"trainer.optimiser.lr": 0.1}'`, a block the configuration
does not have) is allennlp's `ValueError: overrides dict contains unused keys` with a traceback;
`unknown_overrides_named` turns it into an `UnknownOverrideError` naming the key and the part of
it the configuration lacks.
"""

import contextlib
import json
from typing import Any, Dict, Iterator, Optional

from allennlp.common.checks import ConfigurationError

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


class UnknownOverrideError(ConfigurationError):
    """An override key that names no setting of the configuration it applies to."""


def _why_unused(original: Dict[str, Any], key: str) -> Optional[str]:
    """
    Why allennlp's `with_overrides` cannot place `key` in `original`, or `None` where it can (a
    new last key of an existing block is added, as allennlp does; the block's class judges it).
    """
    node: Any = original
    parts = key.split(".")
    for depth, part in enumerate(parts):
        path = ".".join(parts[:depth])
        if isinstance(node, dict):
            if part not in node:
                return (
                    None
                    if depth == len(parts) - 1
                    else f'the configuration has no "{path and path + "."}{part}"'
                )
            node = node[part]
        elif isinstance(node, list):
            if not (part.isdigit() and int(part) < len(node)):
                return (
                    f'"{path}" is a list of {len(node)} in the configuration, with no item {part}'
                )
            node = node[int(part)]
        else:
            return f'"{path}" is {json.dumps(node)} in the configuration, not a block of settings'
    return None


def unknown_override_message(original: Dict[str, Any], overrides: Dict[str, Any]) -> Optional[str]:
    """The first override key of `overrides` that sets nothing in `original`, said in words."""
    for key in overrides:
        reason = _why_unused(original, key)
        if reason is not None:
            return f'the override "{key}" sets nothing: {reason}'
    return None


@contextlib.contextmanager
def unknown_overrides_named(original: Dict[str, Any], overrides: Dict[str, Any]) -> Iterator[None]:
    """
    Around allennlp's `with_overrides(original, overrides)`: its `ValueError` for an override that
    sets nothing becomes an `UnknownOverrideError` naming the key; other errors pass unchanged.
    """
    try:
        yield
    except ValueError as error:
        message = unknown_override_message(original, overrides)
        if message is None:
            raise
        raise UnknownOverrideError(message) from error
