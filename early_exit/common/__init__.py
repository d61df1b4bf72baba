"""
Helpers every layer may use. Import them from their modules (`early_exit.common.archives`, ...):
this file imports nothing, so that the lowest layers (the dataset readers) can use
`early_exit.common.cli_errors` without importing the model.
"""
