"""
Helpers every layer may use. Import them from their modules (`early_exit.common.files`,
`early_exit.common.cli_errors`, ...): this file imports nothing, so that the lowest layers (the
dataset readers, the model) can use the helpers that import nothing from the rest of `early_exit`
without pulling the upper layers in.
"""
