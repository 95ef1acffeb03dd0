"""EC2's request checks that its API model states, which moto leaves out.

The model is the one botocore ships (the same JSON the AWS SDKs are generated from). An EC2 request
arrives as flattened query parameters (`TagSpecification.1.Tag.2.Key`, `SecurityGroupId.1`,
`BlockDeviceMapping.1.Ebs.VolumeSize`): `parse` maps each name back onto the operation's input shape,
as the EC2 query protocol builds it (a member's `queryName`, else its `locationName` with a capital
first letter, else the member's own name; a list's elements are `.1`, `.2`... of the list's name), and
gives a tree of member names (a dict per structure, a list per list, a typed value per scalar) that
the cross-field rules of ec2_rules.py read. `check` then refuses what the model forbids: an unknown
parameter, a required member left out, a value outside its enum, a number outside its range, a string
or list outside its length, a string not matching its pattern, a value not of its type (moto's own
parser, which runs first, fails such a number or boolean with a 500: no SDK sends one).

A refusal is (code, message) with EC2's error codes (UnknownParameter, MissingParameter,
InvalidParameterValue) and messages worded like EC2's; the launcher answers them with HTTP 400.
"""

import base64
import binascii
import functools
import re

import botocore.session

# Parameters of every query call that are not the operation's input.
ENVELOPE = {"Action", "Version"}
SCALARS = {"string", "integer", "long", "boolean", "blob", "timestamp", "double", "float"}


class Refused(Exception):
    """The first thing EC2 would refuse in a request: its error code and message."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@functools.lru_cache(maxsize=1)
def model():
    return botocore.session.get_session().get_service_model("ec2")


@functools.lru_cache(maxsize=None)
def operation(action):
    """The operation's model, or None for an action EC2's model does not have (moto answers those)."""
    try:
        return model().operation_model(action)
    except Exception:  # noqa: BLE001 - botocore's OperationNotFoundError and the like
        return None


def query_name(member_name, shape):
    """The name the EC2 query protocol gives a member (botocore's EC2Serializer does the same)."""
    if "queryName" in shape.serialization:
        return shape.serialization["queryName"]
    if "name" in shape.serialization:
        name = shape.serialization["name"]
        return name[0].upper() + name[1:]
    return member_name


@functools.lru_cache(maxsize=None)
def members_by_query_name(shape_name):
    shape = model().shape_for(shape_name)
    return {query_name(name, member): name for name, member in shape.members.items()}


def parse(action, params):
    """The request's tree of member names (see the module's doc), or Refused for a name the operation
    does not have. `params` is the query string as moto has it: name -> [value, ...]."""
    op = operation(action)
    tree = {}
    for name, values in params.items():
        if name in ENVELOPE:
            continue
        place(tree, op.input_shape, name, name.split("."), values[0] if values else "")
    return to_lists(tree, op.input_shape)


def place(tree, shape, full, segments, value):
    """Puts one flattened parameter into `tree` (lists kept as {index: element} until `to_lists`)."""
    node = tree
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if shape.type_name == "structure":
            member = members_by_query_name(shape.name).get(segment)
            if member is None:
                raise Refused("UnknownParameter", f"The parameter {full} is not recognized")
            key, shape = member, shape.members[member]
        elif shape.type_name == "list":
            if not segment.isdigit() or int(segment) < 1:
                raise Refused("UnknownParameter", f"The parameter {full} is not recognized")
            key, shape = int(segment), shape.member
        else:
            raise Refused("UnknownParameter", f"The parameter {full} is not recognized")
        if last:
            if shape.type_name not in SCALARS:
                if shape.type_name == "list" and value == "":
                    node[key] = {}  # an empty list, sent as its bare name
                    return
                raise Refused("UnknownParameter", f"The parameter {full} is not recognized")
            node[key] = (full, value)
        else:
            node = node.setdefault(key, {})


def to_lists(node, shape):
    """Turns the {index: element} of each list into a list in index order, recursively."""
    if shape.type_name == "structure":
        return {k: to_lists(v, shape.members[k]) for k, v in node.items()}
    if shape.type_name == "list":
        return [to_lists(node[i], shape.member) for i in sorted(node)]
    return node


def check(action, params):
    """The request's tree with typed scalars, or Refused for its first problem by the model."""
    op = operation(action)
    tree = parse(action, params)
    return validate(tree, op.input_shape, "")


def invalid(full, value, why=""):
    return Refused("InvalidParameterValue", f"Value ({value}) for parameter {full} is invalid.{why}")


def validate(node, shape, path):
    """Checks `node` against `shape`; answers the node with scalars converted to their types."""
    if shape.type_name == "structure":
        for name in shape.required_members:
            if name not in node:
                where = query_name(name, shape.members[name])
                raise Refused("MissingParameter", f"The request must contain the parameter {path}{where}")
        return {
            k: validate(v, shape.members[k], f"{path}{query_name(k, shape.members[k])}.") for k, v in node.items()
        }
    if shape.type_name == "list":
        bounds(len(node), shape, path.rstrip("."), "values")
        return [validate(v, shape.member, f"{path}{i}.") for i, v in enumerate(node, 1)]
    full, text = node
    return scalar(shape, full, text)


def bounds(size, shape, full, what):
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if (low is not None and size < low) or (high is not None and size > high):
        raise invalid(full, size, f" It must have between {low} and {high} {what}.")


def scalar(shape, full, text):
    kind = shape.type_name
    if kind in ("integer", "long"):
        if not re.fullmatch(r"-?\d+", text):
            raise invalid(full, text, " Expected an integer.")
        number = int(text)
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if (low is not None and number < low) or (high is not None and number > high):
            raise invalid(full, text, f" It must be between {low} and {high}.")
        return number
    if kind in ("double", "float"):
        try:
            return float(text)
        except ValueError:
            raise invalid(full, text, " Expected a number.") from None
    if kind == "boolean":
        if text.lower() not in ("true", "false"):
            raise invalid(full, text, " Expected true or false.")
        return text.lower() == "true"
    if kind == "blob":
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise invalid(full, text[:40], " Expected base64.") from None
    if kind == "string":
        return string(shape, full, text)
    return text


def string(shape, full, text):
    enum = shape.metadata.get("enum")
    if enum and text not in enum:
        raise invalid(full, text)
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if (low is not None and len(text) < low) or (high is not None and len(text) > high):
        raise invalid(full, text[:64], f" Its length must be between {low} and {high} characters.")
    pattern = shape.metadata.get("pattern")
    if pattern and not re.search(pattern, text):
        raise invalid(full, text[:64], f" It must match {pattern}.")
    return text
