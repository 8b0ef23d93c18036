"""The chart's RBAC is exactly what the operator uses: its API calls in kube.py plus kopf's watches.

The expected rules are derived from the operator's code, so a new API call without a matching rule (or a rule
the operator no longer needs) fails here.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from charts import checks
from taskpool_operator import kube

ROOT = Path(__file__).resolve().parents[2]
OPERATOR = ROOT / "operator" / "taskpool_operator"
POOLS = ("taskpool.dev", "taskworkerpools")
# Registrations that make kopf list and watch a resource (not startup/cleanup/login/probe).
WATCHING_REGISTRATION = (
    r"kopf\.(?:on\.(?:create|update|delete|resume|event|field)|index|daemon|timer)\(([^)]*)\)"
)

Rules = dict[tuple[str, str], set[str]]


def calls_by_function() -> dict[str, Rules]:
    """The `_request("<verb>", <RESOURCE>, ...)` calls of each top-level function of kube.py."""
    found: dict[str, Rules] = {}
    source = (OPERATOR / "kube.py").read_text()
    for block in re.split(r"^def ", source, flags=re.MULTILINE)[1:]:
        rules: Rules = defaultdict(set)
        for verb, resource in re.findall(r'_request\(\s*"(\w+)",\s*(\w+),', block):
            rules[getattr(kube, resource).rbac].add(verb)
        found[block.split("(", 1)[0].split("[", 1)[0]] = rules
    assert any(found.values()), "kube.py makes no _request calls: the pattern above is out of date"
    return found


def kube_functions_called(path: Path) -> set[str]:
    """kube's functions a module calls or passes on (`kube.read_pool(...)`, `read=kube.read_pool`)."""
    return set(re.findall(r"\bkube\.([a-z_]\w*)", path.read_text()))


def merged(rule_sets: list[Rules]) -> Rules:
    rules: Rules = defaultdict(set)
    for found in rule_sets:
        for key, verbs in found.items():
            rules[key] |= verbs
    return rules


def hook_api_calls() -> Rules:
    """The pre-delete hook's calls (`taskpool-operator delete-pools`, uninstall.py)."""
    calls = calls_by_function()
    return merged([calls[name] for name in kube_functions_called(OPERATOR / "uninstall.py")])


def operator_api_calls() -> Rules:
    """Every call in kube.py but those only the pre-delete hook makes: the hook has its own ServiceAccount."""
    used_elsewhere = set().union(
        *(kube_functions_called(p) for p in OPERATOR.rglob("*.py") if p.name != "uninstall.py")
    )
    hook_only = kube_functions_called(OPERATOR / "uninstall.py") - used_elsewhere
    return merged([rules for name, rules in calls_by_function().items() if name not in hook_only])


def kopf_watches() -> Rules:
    """Every resource a kopf handler, index or daemon is registered for is listed and watched."""
    rules: Rules = defaultdict(set)
    source = "\n".join(p.read_text() for p in (OPERATOR / "handlers").glob("*.py"))
    for args in re.findall(WATCHING_REGISTRATION, source):
        strings = re.findall(r'"([^"]+)"', args.split("labels=")[0].split("field=")[0])
        if "*POOLS" in args:
            rules[POOLS] |= {"list", "watch"}
        elif strings:
            group = strings[0] if len(strings) == 3 else ""
            rules[(group, strings[-1])] |= {"list", "watch"}
    return rules


def expected_rules() -> Rules:
    rules = merged([operator_api_calls(), kopf_watches()])
    rules[POOLS].add("patch")  # kopf's finalizer and progress annotations
    rules[("", "events")].add("create")  # kopf.info/kopf.warn and handler events (core v1)
    return rules


def rendered_rules(rules: list[dict[str, Any]]) -> Rules:
    found: Rules = defaultdict(set)
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                found[(group, resource)] |= set(rule["verbs"])
    return found


def render(*set_json: str) -> list[dict[str, Any]]:
    try:
        return checks.documents(checks.template((), set_json, namespace="taskpool-system"))
    except checks.ToolMissing as exc:
        pytest.fail(str(exc), pytrace=False)


def test_derived_rules_cover_what_the_operator_does() -> None:
    rules = expected_rules()
    assert rules[("apps", "deployments")] >= {"get", "create", "update", "patch", "list", "watch"}
    assert rules[("", "secrets")] == {"get"}
    assert rules[("", "pods")] >= {"patch", "list", "watch"}


def test_cluster_wide_rbac_is_exactly_what_the_operator_uses() -> None:
    docs = render()
    roles = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ClusterRole"}
    assert rendered_rules(roles["taskpool"]["rules"]) == expected_rules()
    assert rendered_rules(roles["taskpool-crds"]["rules"]) == {
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"}
    }
    assert not [d for d in docs if d["kind"] in {"Role", "RoleBinding"}]
    for binding in (d for d in docs if d["kind"] == "ClusterRoleBinding"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "taskpool", "namespace": "taskpool-system"}
        ]


def test_watch_namespaces_gives_one_role_per_namespace_and_no_cluster_access() -> None:
    docs = render('operator.watchNamespaces=["shop","analytics"]')
    roles = [d for d in docs if d["kind"] == "Role"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["analytics", "shop"]
    for role in roles:
        assert rendered_rules(role["rules"]) == expected_rules()
    bindings = [d for d in docs if d["kind"] == "RoleBinding"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["analytics", "shop"]
    (cluster_role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    # kopf resolves namespace patterns (globs) by listing and watching namespaces.
    assert rendered_rules(cluster_role["rules"]) == {
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
        ("", "namespaces"): {"list", "watch"},
    }
    args = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0][
        "args"
    ]
    assert "--namespace=shop" in args
    assert "--namespace=analytics" in args
    assert "--all-namespaces" not in args


def test_no_wildcards_anywhere() -> None:
    for docs in (render(), render('operator.watchNamespaces=["shop"]')):
        for doc in docs:
            for rule in doc.get("rules", []):
                for field in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule[field], doc["metadata"]["name"]


def test_rbac_toggle() -> None:
    docs = render("rbac.create=false")
    assert not [d for d in docs if d["kind"] in {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}]


def test_uninstall_hook_may_only_delete_the_pools_of_the_release() -> None:
    pool = {"queues": ["q"], "database": {"secretName": "db"}, "worker": {"image": "w:1"}}
    docs = render(
        "pools=" + json.dumps([{"name": "a", "spec": pool}, {"name": "b", "namespace": "shop", "spec": pool}])
    )
    hooks = [d for d in docs if d["metadata"].get("annotations", {}).get("helm.sh/hook") == "pre-delete"]
    roles = [d for d in hooks if d["kind"] == "Role"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["shop", "taskpool-system"]
    assert hook_api_calls() == {POOLS: {"get", "delete"}}
    for role in roles:
        assert rendered_rules(role["rules"]) == hook_api_calls()
    (job,) = [d for d in hooks if d["kind"] == "Job"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["taskpool-operator", "delete-pools"]
    assert container["args"] == ["--timeout=600", "taskpool-system/a", "shop/b"]
    assert job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "uninstall"
    assert not [d for d in render() if d["kind"] == "Job"], "no hook without pools"
