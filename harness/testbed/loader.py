"""Read a testbed YAML file into a validated :class:`~harness.testbed.model.TestbedSpec`.

Every problem, from a missing file to a bridge naming a peer at the same end, becomes one
:class:`~harness.errors.BadInputError` naming the file, the 1-based line of the offending YAML
node, the field (a dotted path such as ``devices.B2.manufacturer_code``) and the value, with a
one-paragraph message that says what is allowed.
"""

from __future__ import annotations

import difflib
import hashlib
import types
import typing
from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from harness.errors import BadInputError
from harness.testbed.model import SpecError, TestbedSpec

Loc = tuple[str | int, ...]

# Fields holding lists: an integer after one of these is an index, anywhere else a (numeric) key.
_LIST_FIELDS = frozenset({"links", "between", "p2p_peers", "extends_to"})

# A field may be written under either name; an error about one points at whichever the file used.
_ALIASES = {"p2p_peer": "p2p_peers", "p2p_peers": "p2p_peer"}


def load_testbed(path: str | Path) -> TestbedSpec:
    """Read and check the testbed file at ``path``; raise ``BadInputError`` naming file, line, field, value.

    The returned testbed remembers the file (``source``) and the SHA-256 of its bytes (``sha256``),
    so evidence can say exactly which testbed a run used.
    """
    shown = str(path)
    raw = _read_bytes(Path(path), shown)
    text = _decode(raw, shown)
    root, data = _parse_yaml(text, shown)
    try:
        spec = TestbedSpec.model_validate(data)
    except ValidationError as exc:
        raise _explain(exc, root, shown) from exc
    spec._source = Path(path)
    spec._sha256 = hashlib.sha256(raw).hexdigest()
    return spec


def default_testbed_path() -> Path:
    """Where the default testbed, ``testbeds/emulated.yaml``, is installed."""
    found = find_spec("testbeds")
    if found is None or not found.submodule_search_locations:
        raise BadInputError("the 'testbeds' package is not installed, so there is no default testbed")
    return Path(next(iter(found.submodule_search_locations))) / "emulated.yaml"


def testbed_summary(spec: TestbedSpec) -> list[dict[str, str]]:
    """One row per device, for tables: name, type, role, power, nwk, ieee, parent, p2p_peers, firmware, hops.

    All values are display text: ``nwk`` as ``0x0000``, ``firmware`` as ``0x01000000``, ``hops``
    as the number of hops from the coordinator, and an empty string where a column does not apply.
    """
    rows = []
    for device in spec.devices.values():
        rows.append(
            {
                "name": device.name,
                "type": device.type,
                "role": device.role,
                "power": device.power_source,
                "nwk": f"0x{device.nwk:04X}",
                "ieee": device.ieee,
                "parent": device.parent or "",
                "p2p_peers": ", ".join(device.bridge.p2p_peers) if device.bridge else "",
                "firmware": f"0x{device.firmware_version:08X}",
                "hops": str(spec.hops_to(device.name)),
            }
        )
    return rows


testbed_summary.__test__ = False  # type: ignore[attr-defined]  # pytest: not a test, despite the name


# --- reading ---------------------------------------------------------------------------------


def _read_bytes(path: Path, shown: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise BadInputError("no such testbed file", file=shown) from None
    except IsADirectoryError:
        raise BadInputError("is a directory; give a testbed YAML file", file=shown) from None
    except OSError as exc:
        raise BadInputError(f"cannot read the testbed file: {exc.strerror or exc}", file=shown) from None


def _decode(raw: bytes, shown: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise BadInputError(
            f"is not UTF-8 text (byte 0x{raw[exc.start]:02X} at offset {exc.start}); save the file as UTF-8",
            file=shown,
            line=line,
        ) from None


def _parse_yaml(text: str, shown: str) -> tuple[yaml.Node, dict[str, Any]]:
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise BadInputError(
                "is empty; a testbed needs at least name, pan_id, extended_pan_id, radio, devices and links",
                file=shown,
            )
        _check_duplicate_keys(root, (), shown)
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "unreadable YAML"
        if exc.context and exc.problem:
            problem += f" ({exc.context}"
            if exc.context_mark is not None and exc.context_mark is not mark:
                problem += f" that starts at line {exc.context_mark.line + 1}"
            problem += ")"
        raise BadInputError(
            f"is not valid YAML: {_one_paragraph(problem)}",
            file=shown,
            line=mark.line + 1 if mark is not None else None,
        ) from None
    except yaml.YAMLError as exc:
        raise BadInputError(f"is not valid YAML: {_one_paragraph(str(exc))}", file=shown) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise BadInputError(
            "must hold a mapping of fields (name:, pan_id:, devices:, ...) at the top level",
            file=shown,
            line=root.start_mark.line + 1,
            value=data,
        )
    return root, data


def _check_duplicate_keys(node: yaml.Node, path: Loc, shown: str, seen: set[int] | None = None) -> None:
    """PyYAML keeps the last of two equal keys silently; a testbed file must not have any."""
    seen = set() if seen is None else seen
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_line: dict[str, int] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                continue
            line = key.start_mark.line + 1
            if key.value in first_line:
                raise BadInputError(
                    f"appears twice in {_format_loc(path) or 'the top level'} "
                    f"(first at line {first_line[key.value]}); give each key once",
                    file=shown,
                    line=line,
                    field=_format_loc((*path, key.value)),
                    value=key.value,
                )
            first_line[key.value] = line
            _check_duplicate_keys(value, (*path, key.value), shown, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _check_duplicate_keys(item, (*path, index), shown, seen)


# --- explaining validation errors ------------------------------------------------------------

SECRET_FIELDS = frozenset({"network_key", "install_code"})


def _explain(exc: ValidationError, root: yaml.Node, shown: str) -> BadInputError:
    """Turn pydantic's first error (unknown keys first: they explain missing ones) into a BadInputError."""
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    error = errors[0]
    loc: Loc = tuple(error["loc"])
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, SpecError):
        loc = (*loc, *cause.loc)
    line = _line_of(root, loc)
    if error["type"] == "extra_forbidden":
        return _unknown_field(loc, line, shown)
    message, value = _describe(error, loc, cause)
    if any(part in SECRET_FIELDS for part in loc):
        value = None  # a key or install code is a secret, even a mistyped one: never echo it
    return BadInputError(_one_paragraph(message), file=shown, line=line, field=_format_loc(loc), value=value)


def _describe(error: ErrorDetails, loc: Loc, cause: object) -> tuple[str, object]:
    kind = error["type"]
    value = error.get("input")
    if isinstance(cause, SpecError):
        return str(cause), cause.value
    if isinstance(cause, ValueError):
        return str(cause), value
    if kind == "invalid_key" or (loc and loc[-1] == "[key]"):
        return "must be a name (text); YAML read this key as a number or true/false, so quote it", value
    if kind == "missing":
        if loc and isinstance(loc[-1], int):
            return "must name exactly two devices, e.g. [CH, ESME]", None
        return f"is required: {_description(loc) or 'see docs/testbed.md'}", None
    if kind == "literal_error":
        return f"must be one of {error.get('ctx', {}).get('expected', '')}", value
    if kind == "dict_type" and tuple(loc) == ("devices",):
        return "must be a mapping of device names to their fields (type, ieee, nwk, ...)", value
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        fields = _fields_at(loc)
        hint = f" with fields {', '.join(fields)}" if fields else ""
        return f"must be a mapping{hint}", value
    if kind in ("too_short", "too_long", "tuple_type") and loc and loc[-1] == "between":
        return "must name exactly two devices, e.g. [CH, ESME]", value
    if kind == "list_type":
        return "must be a list, e.g. [GSME] or a '- item' per line", value
    if kind == "string_type":
        return "must be text", value
    if kind in ("float_type", "float_parsing", "int_type", "int_parsing"):
        return "must be a number", value
    return error["msg"], value


def _unknown_field(loc: Loc, line: int | None, shown: str) -> BadInputError:
    key = str(loc[-1])
    where = f"in {_format_loc(loc[:-1])}" if len(loc) > 1 else "at the top level"
    allowed = _fields_at(loc[:-1])
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?" if close else f"allowed fields: {', '.join(allowed)}"
    error = BadInputError(f"unknown field '{key}' {where}; {hint}", file=shown, line=line)
    error.field, error.value = _format_loc(loc), key
    return error


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model class that holds the fields at ``loc`` (e.g. DeviceSpec at ("devices", "B2"))."""
    current: Any = TestbedSpec
    pending = 0  # dict/list layers still waiting for their key or index
    for part in loc:
        if pending:
            pending -= 1
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        current, pending = _unwrap(field.annotation)
    if pending:
        return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> tuple[Any, int]:
    """Strip Optional and dict/list layers; return the innermost type and how many layers there were."""
    layers = 0
    while True:
        origin = typing.get_origin(annotation)
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if origin in (typing.Union, types.UnionType) and len(args) == 1:
            annotation = args[0]
        elif origin in (dict, list) and args:
            annotation = args[-1]
            layers += 1
        else:
            return annotation, layers


def _fields_at(loc: Loc) -> list[str]:
    model = _model_at(loc)
    return list(model.model_fields) if model is not None else []


def _description(loc: Loc) -> str | None:
    model = _model_at(loc[:-1])
    if model is None:
        return None
    field = model.model_fields.get(str(loc[-1]))
    return field.description if field is not None else None


def _line_of(root: yaml.Node, loc: Sequence[str | int]) -> int:
    """1-based line of the node at ``loc``, or of its nearest ancestor present in the file."""
    node = root
    line = root.start_mark.line + 1
    for part in loc:
        found = _child(node, part)
        if found is None:
            break
        node, line = found
    return line


def _child(node: yaml.Node, part: str | int) -> tuple[yaml.Node, int] | None:
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int):
        if 0 <= part < len(node.value):
            item = node.value[part]
            return item, item.start_mark.line + 1
        return None
    if isinstance(node, yaml.MappingNode):
        for wanted in (str(part), _ALIASES.get(str(part))):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == wanted:
                    mark = value if isinstance(value, yaml.ScalarNode) else key
                    return value, mark.start_mark.line + 1
    return None


def _format_loc(loc: Sequence[str | int]) -> str:
    """The dotted field path users see: ``devices.B2.nwk``, ``links[4].between[1]``."""
    text = ""
    previous: str | int | None = None
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(part, int) and previous in _LIST_FIELDS:
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
        previous = part
    return text


def _one_paragraph(text: str) -> str:
    return " ".join(text.split())
