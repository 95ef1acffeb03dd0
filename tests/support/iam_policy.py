"""IAM's evaluation of identity policies, for the moto launcher's `/policy` (see ec2_authz.py for how an
EC2 call becomes the checks evaluated here).

The documented logic for a caller with identity policies only (no resource policies, boundaries, SCPs
or sessions): a matching statement with Effect Deny refuses the request whatever else allows it; else
some matching Allow statement must allow it; else it is refused (implicit deny).

A statement matches when its Action (or NotAction) and Resource (or NotResource) match and every
condition of its Condition block holds:
- actions are matched case-insensitively, with the wildcards `*` (any run of characters) and `?`
  (one character); ARNs case-sensitively, segment by segment (a wildcard does not cross a colon but in
  the last segment, the resource, which may hold colons itself); `*` alone matches every resource;
- a Condition block ANDs its operators, an operator ANDs its keys, and a key ORs its values (for the
  negated operators, `StringNotEquals` and the like, the request value must match none of them);
- condition key names are case-insensitive (`aws:RequestTag/amiprobe:run-id` included);
- a key absent from the request makes a condition false, but a negated one true, an `...IfExists` one
  true, and `Null` is true exactly when `"true"` was asked of an absent key (or `"false"` of a present);
- `ForAllValues:` holds when every request value matches (also when there are none), `ForAnyValue:`
  when one does; without either, a key with several request values holds when one does (none, for a
  negated operator);
- an operator this file does not know never holds for an Allow and always holds for a Deny: unknown
  conditions fail closed, they never allow.

The request context is a dict of condition key -> list of string values (a key that is absent is not
in it); see ec2_authz.py for the keys an EC2 call carries.
"""

import re

# The operators known here, by base name: (how a request value is compared, whether it is negated).
STRING = {
    "StringEquals": ("exact", False),
    "StringNotEquals": ("exact", True),
    "StringEqualsIgnoreCase": ("ignore_case", False),
    "StringNotEqualsIgnoreCase": ("ignore_case", True),
    "StringLike": ("like", False),
    "StringNotLike": ("like", True),
    "ArnEquals": ("arn", False),
    "ArnLike": ("arn", False),
    "ArnNotEquals": ("arn", True),
    "ArnNotLike": ("arn", True),
    "Bool": ("bool", False),
}


def as_list(value):
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def wildcard(pattern, value, ignore_case=False):
    """`*` and `?` as IAM reads them in actions, resources and StringLike; everything else literal."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.DOTALL | (re.IGNORECASE if ignore_case else 0)) is not None


def arn_matches(pattern, arn):
    """An ARN against a Resource or ArnLike pattern, segment by segment (case-sensitive)."""
    if pattern == "*":
        return True
    want = pattern.split(":", 5)
    have = arn.split(":", 5)
    if len(want) != 6 or len(have) != 6:
        return False
    return all(wildcard(w, h) for w, h in zip(want, have))


def compare(kind, policy_value, request_value):
    if kind == "exact":
        return policy_value == request_value
    if kind == "ignore_case":
        return policy_value.lower() == request_value.lower()
    if kind == "like":
        return wildcard(policy_value, request_value)
    if kind == "arn":
        return arn_matches(policy_value, request_value)
    if kind == "bool":
        return policy_value.lower() == request_value.lower()
    raise ValueError(kind)


def parse_operator(name):
    """(set qualifier or None, base operator, if_exists) of an operator name like
    `ForAnyValue:StringLikeIfExists`."""
    qualifier = None
    for prefix in ("ForAllValues:", "ForAnyValue:"):
        if name.startswith(prefix):
            qualifier, name = prefix[:-1], name[len(prefix) :]
    if_exists = name.endswith("IfExists") and name != "IfExists"
    if if_exists:
        name = name[: -len("IfExists")]
    return qualifier, name, if_exists


def lookup(context, key):
    """The request's values of a condition key (names are case-insensitive), or None when absent."""
    wanted = key.lower()
    for k, values in context.items():
        if k.lower() == wanted:
            return values
    return None


def key_holds(operator, key, policy_values, context):
    """One key of one operator: True, False, or None when the operator is not known here."""
    qualifier, base, if_exists = parse_operator(operator)
    request = lookup(context, key)
    policy_values = [str(v).lower() if isinstance(v, bool) else str(v) for v in as_list(policy_values)]
    if base == "Null":
        if qualifier or if_exists:
            return None
        absent = not request
        return any(v.lower() == ("true" if absent else "false") for v in policy_values)
    if base not in STRING:
        return None
    kind, negated = STRING[base]

    def one(value):
        matched = any(compare(kind, p, value) for p in policy_values)
        return not matched if negated else matched

    if qualifier == "ForAllValues":
        return all(one(v) for v in request or [])
    if qualifier == "ForAnyValue":
        return any(one(v) for v in request or [])
    if not request:
        return if_exists or negated
    return all(one(v) for v in request) if negated else any(one(v) for v in request)


def conditions_hold(condition, context, effect):
    """Every operator and key of a Condition block; an unknown operator holds only for a Deny."""
    for operator, keys in (condition or {}).items():
        if not isinstance(keys, dict):
            return effect == "Deny"
        for key, values in keys.items():
            holds = key_holds(operator, key, values, context)
            if holds is None:
                holds = effect == "Deny"
            if not holds:
                return False
    return True


def statement_matches(statement, action, resource, context):
    effect = statement.get("Effect")
    if "Action" in statement:
        if not any(wildcard(a, action, ignore_case=True) for a in as_list(statement["Action"])):
            return False
    elif "NotAction" in statement:
        if any(wildcard(a, action, ignore_case=True) for a in as_list(statement["NotAction"])):
            return False
    else:
        return False
    if "Resource" in statement:
        if not any(arn_matches(r, resource) for r in as_list(statement["Resource"])):
            return False
    elif "NotResource" in statement:
        if any(arn_matches(r, resource) for r in as_list(statement["NotResource"])):
            return False
    else:
        return False
    return conditions_hold(statement.get("Condition"), context, effect)


def decide(document, action, resource, context):
    """`"allow"`, `"explicit_deny"` or `"implicit_deny"`: IAM's decision on one request by a caller
    holding exactly the identity policy `document`."""
    statements = as_list((document or {}).get("Statement"))
    matching = [s for s in statements if isinstance(s, dict) and statement_matches(s, action, resource, context)]
    if any(s.get("Effect") == "Deny" for s in matching):
        return "explicit_deny"
    if any(s.get("Effect") == "Allow" for s in matching):
        return "allow"
    return "implicit_deny"


def first_refused(document, checks):
    """The first (action, resource, context) of `checks` that `document` does not allow, with the
    decision, or None when it allows every one (a call is allowed only when all its checks are)."""
    for action, resource, context in checks:
        decision = decide(document, action, resource, context)
        if decision != "allow":
            return action, resource, context, decision
    return None
