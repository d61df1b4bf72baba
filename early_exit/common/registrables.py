from typing import Any, Dict, Type, TypeVar, Union

from allennlp.common import Params, Registrable
from allennlp.common.checks import ConfigurationError

R = TypeVar("R", bound=Registrable)


def registered(base: Type[R], value: Union[R, Dict[str, Any]], name: str) -> R:
    """
    `value` as an instance of the `Registrable` `base`: a dictionary is its config (`{"type": ...,
    ...}`, built with `from_params`), an instance is taken as it is; anything else is a
    `ConfigurationError` naming the setting `name`.
    """
    if isinstance(value, dict):
        value = base.from_params(Params(dict(value), history=f"{name}."))
    if not isinstance(value, base):
        raise ConfigurationError(f"{name} must be a {base.__name__}, got {value!r}")
    return value
