"""
Helpers every layer may use. Import them from their modules (`early_exit.common.files`,
`early_exit.common.encoder_files`, ...): this package imports nothing itself, so that the lower
layers (readers, models) can use its helpers that import nothing from the rest of `early_exit`
without pulling the upper layers in.
"""
