"""SSM's request checks that its API model states, which moto leaves out (ssm_run.py's first step).

The model is botocore's (the JSON the AWS SDKs are generated from). A JSON-protocol request is a JSON
document shaped like the operation's input: `refusal` walks it and answers the violations SSM's
front end reports as a ValidationException, worded as it words them:

  2 validation errors detected: Value '51' at 'maxResults' failed to satisfy constraint: Member must
  have value less than or equal to 50; Value null at 'documentName' failed to satisfy constraint:
  Member must not be null

Paths are the members' names with a lower-case first letter, a list element `name.N.member` (N from
1), a map value `name.KEY.member`. Checked: required members, string and list lengths (min/max),
number ranges, enums, patterns (matched whole, \\w as ASCII, as Java does). Members the model does
not know are ignored, as SSM ignores them; so are patterns Python's `re` cannot read (`\\p{L}`).
SDKs check some of this themselves (botocore: required members and minimums), not all: a maximum,
a pattern or an enum reaches the service. A member of the wrong JSON type (a string for a number)
is a SerializationException with no message, as SSM answers a body it cannot read.
"""

import functools
import re

import botocore.session


@functools.lru_cache(maxsize=1)
def model():
    return botocore.session.get_session().get_service_model("ssm")


@functools.lru_cache(maxsize=None)
def pattern(text):
    """The compiled pattern, or None for one Python cannot read."""
    try:
        return re.compile(text, re.ASCII)
    except re.error:
        return None


class WrongType(Exception):
    """A member whose JSON type is not its shape's: SSM cannot even read the request."""


# The JSON types of each scalar shape (a bool is an int to Python: told apart below).
JSON_TYPES = {"string": str, "integer": int, "long": int, "boolean": bool, "double": (int, float), "float": (int, float)}
JSON_TYPES.update(structure=dict, map=dict, list=list, timestamp=(int, float, str), blob=str)


def refusal(action, body):
    """(error code, message) SSM answers the request body with, or None when the model allows it:
    SerializationException (no message) for a member of the wrong JSON type, else ValidationException
    with every constraint broken."""
    errors = []
    try:
        check(body, model().operation_model(action).input_shape, "", errors)
    except WrongType:
        return "SerializationException", ""
    if not errors:
        return None
    noun = "validation error" if len(errors) == 1 else "validation errors"
    return "ValidationException", f"{len(errors)} {noun} detected: " + "; ".join(errors)


def member_path(prefix, name):
    name = name[0].lower() + name[1:]
    return f"{prefix}.{name}" if prefix else name


def shown(value):
    """A value as SSM quotes it in the message: lists in brackets, None as null."""
    if value is None:
        return "null"
    if isinstance(value, list):
        return "'[" + ", ".join(str(v) for v in value) + "]'"
    return f"'{value}'"


def check(value, shape, path, errors):
    """Appends to `errors` what SSM says of `value` against `shape` (and of everything inside it)."""
    kind = shape.type_name
    if not isinstance(value, JSON_TYPES[kind]) or (isinstance(value, bool) and kind != "boolean"):
        raise WrongType(path)
    if kind == "structure":
        for name, member in shape.members.items():
            where = member_path(path, name)
            if value.get(name) is not None:  # JSON null is a member left out
                check(value[name], member, where, errors)
            elif name in shape.required_members:
                errors.append(f"Value null at '{where}' failed to satisfy constraint: Member must not be null")
    elif kind == "list":
        length(value, len(value), shape, path, errors)
        for i, element in enumerate(value, 1):
            check(element, shape.member, f"{path}.{i}.member", errors)
    elif kind == "map":
        length(value, len(value), shape, path, errors)
        for key, element in value.items():
            check(element, shape.value, f"{path}.{key}.member", errors)
    elif kind == "string":
        string(value, shape, path, errors)
    elif kind in ("integer", "long"):
        limits(value, shape, path, errors, "value")


def length(value, size, shape, path, errors):
    limits(size, shape, path, errors, "length", value)


def limits(number, shape, path, errors, what, value=None):
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    start = f"Value {shown(number if value is None else value)} at '{path}' failed to satisfy constraint: Member must"
    if low is not None and number < low:
        errors.append(f"{start} have {what} greater than or equal to {low}")
    if high is not None and number > high:
        errors.append(f"{start} have {what} less than or equal to {high}")


def string(value, shape, path, errors):
    limits(len(value), shape, path, errors, "length", value)
    enum = shape.metadata.get("enum")
    if enum and value not in enum:
        errors.append(
            f"Value {shown(value)} at '{path}' failed to satisfy constraint: Member must satisfy enum value set: "
            f"[{', '.join(enum)}]"
        )
    compiled = pattern(shape.metadata["pattern"]) if "pattern" in shape.metadata else None
    if compiled is not None and not compiled.fullmatch(value):
        errors.append(
            f"Value {shown(value)} at '{path}' failed to satisfy constraint: Member must satisfy regular expression "
            f"pattern: {shape.metadata['pattern']}"
        )
