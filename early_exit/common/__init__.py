"""
Helpers every layer may use. Import them from their modules (`early_exit.common.files`, ...): this
package imports none of them itself, so that importing a bottom-layer helper such as
`early_exit.common.files` does not load the model (`early_exit.common.archives` imports it).
"""
