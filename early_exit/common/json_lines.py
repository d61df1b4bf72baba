"""
Decoding one line of a JSON-lines input, for the readers and the predictor alike.

Besides JSON syntax errors, Python's decoder stops at two limits of its own, with exceptions that
are not `json.JSONDecodeError`: nesting deeper than the recursion limit (`RecursionError`) and
integers of more than 4,300 digits (a plain `ValueError`, Python 3.11+). `decode_json_line` turns
all three into one `InvalidJsonLine`, so that callers report every undecodable line the same way.
Imports nothing from the rest of the package.
"""

import json
import sys
from typing import Any


class InvalidJsonLine(ValueError):
    """
    A line that is not one JSON value. The message says why, e.g. `"Expecting value at column 3"`
    or `"nested too deeply"`.
    """


def decode_json_line(line: str) -> Any:
    """
    `json.loads(line)`, raising `InvalidJsonLine` for whatever keeps it from being decoded.
    """
    try:
        return json.loads(line)
    except json.JSONDecodeError as error:
        raise InvalidJsonLine(f"{error.msg} at column {error.colno}") from None
    except RecursionError:
        raise InvalidJsonLine("nested too deeply") from None
    except ValueError:
        limit = getattr(sys, "get_int_max_str_digits", lambda: 4300)()
        raise InvalidJsonLine(f"a number with more than {limit} digits") from None
