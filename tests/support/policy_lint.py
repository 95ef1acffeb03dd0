"""Lints an IAM policy file with parliament and prints its findings as JSON, one object a line:
{"issue", "group", "severity", "detail"}. Run with build/moto-venv/bin/python (scripts/install-deps
moto installs parliament there); tests/ec2_policy_lint.rs decides which findings mean a broken policy.

    policy_lint.py POLICY.json

The one change to parliament's own verdict: RESOURCE_MISMATCH is judged per statement, but IAM
authorizes each resource of a request on its own, against every statement of the policy. A policy
that splits one action's resources over several statements (a tag-conditioned statement for what
it creates, an unconditioned one for what it only uses, as AWS's own RunInstances examples do) is
flagged though every resource type is allowed (parliament issue #3, open). So a required format
that another Allow statement for the same action covers is dropped from the finding, and a finding
left with none is dropped; what is left is a resource type no statement allows.
"""

import fnmatch
import json
import sys

import parliament
from parliament import analyze_policy_string, enhance_finding, is_arn_strictly_valid


def as_list(value):
    return value if isinstance(value, list) else [value]


def covered_elsewhere(policy, action, arn_format):
    """Whether some Allow statement allows `action` on a resource of `arn_format`."""
    resource_type = arn_format.split(":")[5].split("/")[0] if arn_format.count(":") >= 5 else ""
    for statement in as_list(policy.get("Statement", [])):
        if statement.get("Effect") != "Allow":
            continue
        actions = as_list(statement.get("Action", []))
        if not any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in actions):
            continue
        for resource in as_list(statement.get("Resource", [])):
            if resource == "*" or is_arn_strictly_valid(resource_type, arn_format, resource):
                return True
    return False


def main():
    text = open(sys.argv[1]).read()
    linted = analyze_policy_string(text, sys.argv[1])
    try:
        policy = json.loads(text)
    except ValueError:
        policy = {}
    for finding in linted.findings:
        finding = enhance_finding(finding)
        detail = finding.detail
        if finding.issue == "RESOURCE_MISMATCH" and isinstance(detail, list):
            detail = [
                d for d in detail if not covered_elsewhere(policy, d.get("action", ""), d.get("required_format", ""))
            ]
            if not detail:
                continue
        group = parliament.config.get(finding.issue, {}).get("group", "")
        print(json.dumps({"issue": finding.issue, "group": group, "severity": finding.severity, "detail": detail}, default=str))


if __name__ == "__main__":
    main()
