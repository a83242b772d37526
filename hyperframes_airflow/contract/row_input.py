"""One row's StartExecution input and digest, assembled fast and byte-exact.

For every row the input is the same document but for its name, output key and variables
(contract §3.1). Serialising the whole document twice per row (once for the digest, once for the
input) cost most of a 100,000-row plan; here the constant parts (project URI, the Config without
variables, the protocol) are encoded once per batch and each row only encodes its variables,
once. The result is byte-for-byte `encode_execution_input(build_execution_input(...))`, which
`tests/contract/test_row_input.py` checks on varied documents.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from hyperframes_airflow.contract.execution import (
    MAX_INPUT_BYTES,
    ExecutionInputTooLarge,
    encode_execution_input,
    js_numbers,
)
from hyperframes_airflow.contract.site import site_key

__all__ = ["RowInputs"]

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def _needs_js_numbers(variables: Mapping[str, Any]) -> bool:
    """True when some value is a float (JS writes `30.0` as `30`) or not a plain JSON type."""
    stack: list[Any] = list(variables.values())
    while stack:
        value = stack.pop()
        kind = type(value)
        if kind is str or kind is int or kind is bool or value is None:
            continue
        if kind is dict:
            stack.extend(value.values())
        elif kind is list:
            stack.extend(value)
        else:
            return True
    return False


class RowInputs:
    """The inputs of one batch's rows: same project, bucket and Config, own variables.

    :param base_wire: The wire Config without variables (`RenderConfig.to_wire()`).
    :param bucket: The bucket the input names (the stack's, or a sizing stand-in).
    :param site_id: The site every row renders.
    """

    def __init__(
        self,
        *,
        base_wire: Mapping[str, Any],
        bucket: str,
        site_id: str,
        plan_protocol: str = "v2",
    ) -> None:
        self.bucket = bucket
        self._head = '{"ProjectS3Uri":' + _dumps(f"s3://{bucket}/{site_key(site_id)}")
        config = encode_execution_input(dict(base_wire))
        self._config_alone = config
        self._config_open = config[:-1] + ("," if len(config) > 2 else "")
        self._tail = ',"PlanProtocol":' + _dumps(plan_protocol) + "}"

    def variables_json(self, variables: Mapping[str, Any]) -> str | None:
        """The row's variables as the Config's last member encodes them (None: omitted)."""
        if not variables:
            return None
        try:
            value: Any = js_numbers(variables) if _needs_js_numbers(variables) else variables
            return _dumps(value)
        except ValueError:  # NaN/Infinity: the full encoder names the path in its message
            encode_execution_input({"Config": {"variables": dict(variables)}})
            raise

    def _config(self, variables_json: str | None) -> str:
        if variables_json is None:
            return self._config_alone
        return f'{self._config_open}"variables":{variables_json}}}'

    def encoded(self, *, name: str, output_key: str, variables_json: str | None) -> str:
        """The exact compact input of a row under `name`."""
        return (
            f'{self._head},"PlanOutputS3Prefix":{_dumps(f"s3://{self.bucket}/renders/{name}/")}'
            f',"OutputS3Uri":{_dumps(f"s3://{self.bucket}/{output_key}")}'
            f',"Config":{self._config(variables_json)}{self._tail}'
        )

    def digest(self, *, output_key: str, variables_json: str | None) -> str:
        """sha256 hex of the input without its name (`execution.render_digest`)."""
        doc = (
            f'{self._head},"OutputS3Uri":{_dumps(f"s3://{self.bucket}/{output_key}")}'
            f',"Config":{self._config(variables_json)}{self._tail}'
        )
        return hashlib.sha256(doc.encode("utf-8")).hexdigest()

    @staticmethod
    def size(encoded: str) -> int:
        """UTF-8 bytes of an input; raises the Node SDK's error above 262,144, or a
        ValueError for a lone surrogate (not text)."""
        if encoded.isascii():
            size = len(encoded)
        else:
            try:
                size = len(encoded.encode("utf-8"))
            except UnicodeEncodeError as exc:
                raise ValueError(
                    "execution input contains a lone UTF-16 surrogate, which is not valid text"
                ) from exc
        if size > MAX_INPUT_BYTES:
            raise ExecutionInputTooLarge(size)
        return size
