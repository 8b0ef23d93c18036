"""pytest over `helm template`: the defaults, every toggle, `pools:`, Pod Security, and the values schema."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from typing import Any

import pytest
import yaml

import taskpool_operator
from charts import checks
from taskpool_operator import objects

NAMESPACE = "taskpool-system"


def render(*set_json: str, values_files: Sequence[Any] = ()) -> list[dict[str, Any]]:
    try:
        return checks.documents(checks.template(values_files, set_json, namespace=NAMESPACE))
    except checks.ToolMissing as exc:
        pytest.fail(str(exc), pytrace=False)


def render_error(*set_json: str) -> str:
    with pytest.raises(subprocess.CalledProcessError) as failure:
        checks.template((), set_json, namespace=NAMESPACE)
    return str(failure.value.stderr)


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = of_kind(docs, kind)
    return found


def operator_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


def test_defaults_render_the_operator_without_optional_objects() -> None:
    docs = render()
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == [
        "ClusterRole", "ClusterRole", "ClusterRoleBinding", "ClusterRoleBinding",
        "CustomResourceDefinition", "Deployment", "Service", "ServiceAccount",
    ]  # fmt: skip
    for doc in docs:
        if doc["kind"] != "CustomResourceDefinition":
            labels = doc["metadata"]["labels"]
            assert labels["app.kubernetes.io/instance"] == "taskpool"
            assert labels["app.kubernetes.io/version"] == taskpool_operator.__version__
            assert labels["app.kubernetes.io/managed-by"] == "Helm"


def test_one_operator_replica_replaced_not_rolled() -> None:
    deployment = one(render(), "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = operator_pod(render())["containers"][0]
    assert container["image"] == f"ghcr.io/taskpool/taskpool-operator:{taskpool_operator.__version__}"
    assert container["args"] == ["run", "--log-level=info", "--log-format=json", "--all-namespaces"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """The Pod Security "restricted" profile's checks, for a rendered pod spec."""
    problems = []
    pod_sc = pod.get("securityContext", {})
    for container in pod.get("initContainers", []) + pod["containers"]:
        sc = container.get("securityContext", {})
        name = container["name"]
        if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
            problems.append(f"{name}: runAsNonRoot")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            problems.append(f"{name}: capabilities.drop")
        if set(sc.get("capabilities", {}).get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: capabilities.add")
        seccomp = sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}
        if seccomp.get("type") not in {"RuntimeDefault", "Localhost"}:
            problems.append(f"{name}: seccompProfile")
        if sc.get("privileged") or sc.get("runAsUser") == 0 or pod_sc.get("runAsUser") == 0:
            problems.append(f"{name}: privileged or root")
        if not sc.get("readOnlyRootFilesystem"):
            problems.append(f"{name}: readOnlyRootFilesystem (our own stricter default)")
    for volume in pod.get("volumes", []):
        if "hostPath" in volume:
            problems.append(f"volume {volume['name']}: hostPath")
    if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
        problems.append("host namespaces")
    return problems


def test_operator_pod_meets_pod_security_restricted() -> None:
    pod = operator_pod(render())
    assert restricted_violations(pod) == []
    assert pod["automountServiceAccountToken"] is True
    assert one(render(), "ServiceAccount")["automountServiceAccountToken"] is False


def test_resources_scheduling_pull_secrets_env_and_logging_are_configurable() -> None:
    pod = operator_pod(
        render(
            'operator.resources={"requests":{"cpu":"100m","memory":"200Mi"},"limits":{"memory":"400Mi"}}',
            'operator.nodeSelector={"kubernetes.io/os":"linux"}',
            'operator.tolerations=[{"key":"dedicated","operator":"Exists","effect":"NoSchedule"}]',
            'operator.affinity={"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":'
            '{"nodeSelectorTerms":[{"matchExpressions":[{"key":"pool","operator":"In","values":["infra"]}]}]}}}',
            'imagePullSecrets=[{"name":"registry"}]',
            'operator.extraEnv=[{"name":"TZ","value":"UTC"}]',
            'operator.logLevel="debug"',
            'operator.logFormat="text"',
            'operator.priorityClassName="system-cluster-critical"',
        )
    )
    container = pod["containers"][0]
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "200Mi"},
        "limits": {"memory": "400Mi"},
    }
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"][0]["key"] == "dedicated"
    assert "nodeAffinity" in pod["affinity"]
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert {"name": "TZ", "value": "UTC"} in container["env"]
    assert "--log-level=debug" in container["args"]
    assert "--log-format=text" in container["args"]


def test_image_digest_pins_the_image() -> None:
    digest = "sha256:" + "ab" * 32
    pod = operator_pod(render(f'image.digest="{digest}"', 'image.tag="1.2.3"'))
    assert pod["containers"][0]["image"] == f"ghcr.io/taskpool/taskpool-operator:1.2.3@{digest}"


def test_metrics_service_selects_the_operator_pod() -> None:
    docs = render("metrics.service.port=9090")
    service = one(docs, "Service")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_service_monitor_toggle() -> None:
    assert not of_kind(render(), "ServiceMonitor")
    docs = render(
        "monitoring.serviceMonitor.enabled=true",
        'monitoring.serviceMonitor.labels={"release":"prometheus"}',
        'monitoring.serviceMonitor.interval="30s"',
    )
    monitor = one(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics"
    assert endpoint["honorLabels"] is True
    assert endpoint["interval"] == "30s"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items()
        <= one(docs, "Service")["metadata"]["labels"].items()
    )


def pod_monitor(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    (found,) = (
        d
        for d in of_kind(docs, "PodMonitor")
        if d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == component
    )
    return found


def test_pod_monitor_toggle_relabels_the_pool_label() -> None:
    assert not of_kind(render(), "PodMonitor")
    monitor = pod_monitor(render("monitoring.podMonitor.enabled=true"), "worker")
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "taskpool-worker"
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics"
    assert {
        "sourceLabels": ["__meta_kubernetes_pod_label_taskpool_dev_pool"],
        "targetLabel": "pool",
    } in endpoint["relabelings"]
    limited = pod_monitor(
        render("monitoring.podMonitor.enabled=true", 'operator.watchNamespaces=["shop"]'), "worker"
    )
    assert limited["spec"]["namespaceSelector"] == {"matchNames": ["shop"]}


def test_pod_monitor_of_the_schedulers_selects_the_labels_the_operator_puts_on_scheduler_pods() -> None:
    docs = render("monitoring.podMonitor.enabled=true", 'operator.watchNamespaces=["shop"]')
    schedulers, workers = pod_monitor(docs, "scheduler"), pod_monitor(docs, "worker")
    assert (
        schedulers["spec"]["selector"]["matchLabels"].items() <= objects.scheduler_pod_labels("web").items()
    )
    assert (
        not workers["spec"]["selector"]["matchLabels"].items() <= objects.scheduler_pod_labels("web").items()
    )
    for key in ("namespaceSelector", "podMetricsEndpoints"):
        assert schedulers["spec"][key] == workers["spec"][key]


def test_prometheus_rule_toggle() -> None:
    assert not of_kind(render(), "PrometheusRule")
    rule = one(
        render("monitoring.prometheusRule.enabled=true", 'monitoring.prometheusRule.labels={"release":"p"}'),
        "PrometheusRule",
    )
    assert rule["metadata"]["labels"]["release"] == "p"
    alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert alerts, "the alerts are rendered"
    off = one(render("monitoring.prometheusRule.enabled=true", "alerts.enabled=false"), "PrometheusRule")
    assert not [r for g in off["spec"]["groups"] for r in g["rules"] if "alert" in r]


def test_dashboards_toggle_with_sidecar_label_and_folder_annotation() -> None:
    assert not of_kind(render(), "ConfigMap")
    maps = of_kind(
        render(
            "monitoring.dashboards.enabled=true",
            'monitoring.dashboards.annotations={"grafana_folder":"Taskpool"}',
            'monitoring.dashboards.namespace="grafana"',
        ),
        "ConfigMap",
    )
    assert len(maps) >= 3
    for config_map in maps:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert config_map["metadata"]["annotations"] == {"grafana_folder": "Taskpool"}
        assert config_map["metadata"]["namespace"] == "grafana"
        (content,) = config_map["data"].values()
        assert yaml.safe_load(content)["title"]
    relabelled = of_kind(
        render(
            "monitoring.dashboards.enabled=true", 'monitoring.dashboards.labels={"dashboards":"taskpool"}'
        ),
        "ConfigMap",
    )
    assert relabelled[0]["metadata"]["labels"]["dashboards"] == "taskpool"


def test_network_policy_toggle() -> None:
    assert not of_kind(render(), "NetworkPolicy")
    policy = one(
        render(
            "networkPolicy.enabled=true",
            'networkPolicy.metricsFrom=[{"namespaceSelector":{"matchLabels":{"name":"monitoring"}}}]',
            "networkPolicy.databasePorts=[5432,6432]",
        ),
        "NetworkPolicy",
    )
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["spec"]["ingress"]
    assert ingress["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert ingress["from"] == [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]
    egress_ports = [p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]]
    assert egress_ports == [53, 53, 443, 6443, 5432, 6432]


def test_service_account_toggle() -> None:
    docs = render("serviceAccount.create=false", 'serviceAccount.name="existing"')
    assert not of_kind(docs, "ServiceAccount")
    assert operator_pod(docs)["serviceAccountName"] == "existing"
    assert "serviceAccount.name is required" in render_error("serviceAccount.create=false")


def test_pools_from_values() -> None:
    spec = {"queues": ["emails"], "database": {"secretName": "db"}, "worker": {"image": "worker:1"}}
    docs = render(
        "pools=" + json.dumps([
            {"name": "emails", "spec": spec},
            {"name": "reports", "namespace": "analytics", "labels": {"team": "a"}, "annotations": {"x": "y"},
             "spec": spec},
        ])
    )  # fmt: skip
    pools = of_kind(docs, "TaskWorkerPool")
    assert [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in pools] == [
        (NAMESPACE, "emails"),
        ("analytics", "reports"),
    ]
    assert pools[0]["apiVersion"] == "taskpool.dev/v1alpha1"
    assert pools[0]["spec"] == spec
    assert pools[1]["metadata"]["labels"]["team"] == "a"
    assert pools[1]["metadata"]["annotations"] == {"x": "y"}
    assert checks.validate(pools) == []
    assert not of_kind(render(), "TaskWorkerPool")


def test_ci_values_render_valid_manifests_for_every_supported_kubernetes() -> None:
    for values in checks.ci_values_files():
        docs = render(values_files=[values])
        assert checks.validate(docs) == [], values.name


def test_manifest_validation_catches_schema_errors() -> None:
    wrong_type = one(render(), "Deployment")
    wrong_type["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = 5
    (error,) = checks.validate([wrong_type], versions=["1.30.0"])
    assert "spec.template.spec.containers.0.imagePullPolicy" in error
    unknown_field = one(render(), "Deployment")
    unknown_field["spec"]["strategy"]["rollingUpdate"] = {"surge": 1}
    (error,) = checks.validate([unknown_field], versions=["1.37.0"])
    assert "'surge' was unexpected" in error
    pool = {"apiVersion": "taskpool.dev/v1alpha1", "kind": "TaskWorkerPool", "metadata": {"name": "p"},
            "spec": {"queues": []}}  # fmt: skip
    assert checks.validate([pool]), "the CRD schema rejects a pool without database and worker"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "operator.logLevel=5",
            "at '/operator/logLevel': value must be one of 'debug', 'info', 'warning', 'error'",
        ),
        ('operator.logLevel="verbose"', "at '/operator/logLevel': value must be one of"),
        ("operator.replicas=2", "at '/operator': additional properties 'replicas' not allowed"),
        (
            'monitoring.serviceMonitor.enabled="yes"',
            "at '/monitoring/serviceMonitor/enabled': got string, want boolean",
        ),
        ("metrics.service.port=70000", "at '/metrics/service/port': maximum: got 70,000, want 65,535"),
        ('pools=[{"name":"Bad_Name","spec":{}}]', "at '/pools/0/name': 'Bad_Name' does not match pattern"),
        ('pools=[{"spec":{}}]', "at '/pools/0': missing property 'name'"),
        ("unknownTopLevel=true", "additional properties 'unknownTopLevel' not allowed"),
        ('image.digest="latest"', "at '/image/digest': 'latest' does not match pattern"),
        ("alerts.failureRatio.ratio=2", "at '/alerts/failureRatio/ratio'"),
        # A pool's spec is checked against the CRD schema (generated into values.schema.json), typos too.
        (
            'pools=[{"name":"a","spec":{"queues":["q"],"database":{"secretName":"db"},"worker":{"image":"w"},'
            '"scaling":{"minReplica":1}}}]',
            "at '/pools/0/spec/scaling': additional properties 'minReplica' not allowed",
        ),
        (
            'pools=[{"name":"a","spec":{"queues":["q"],"worker":{"image":"w"}}}]',
            "missing property 'database'",
        ),
        (
            'pools=[{"name":"a","spec":{"queues":["q"],"database":{"secretName":"db"},'
            '"worker":{"image":"w","concurrency":0}}}]',
            "at '/pools/0/spec/worker/concurrency': minimum: got 0, want 1",
        ),
    ],
)
def test_values_schema_rejects_wrong_types_and_unknown_keys(value: str, expected: str) -> None:
    message = render_error(value)
    assert "values don't meet the specifications of the schema" in message
    assert expected in message, message


def test_notes_tell_the_user_what_to_do_next() -> None:
    spec = {"queues": ["emails"], "database": {"secretName": "db"}, "worker": {"image": "worker:1"}}
    pools = [{"name": "emails", "namespace": "shop", "spec": spec}]
    notes = checks.helm(
        "install", "taskpool", str(checks.CHART), "--namespace", NAMESPACE, "--dry-run=client",
        "--set-json", "pools=" + json.dumps(pools), "--set-json", 'operator.watchNamespaces=["shop"]',
    ).stdout.split("NOTES:", 1)[1]  # fmt: skip
    assert f"kubectl -n {NAMESPACE} rollout status deployment/taskpool" in notes
    assert "create secret generic" in notes
    assert "the namespaces shop" in notes
    assert "shop/emails" in notes
    assert "monitoring.serviceMonitor.enabled" in notes
    assert "kubectl apply --server-side" in notes, "the CRD upgrade step"
    quiet = checks.helm(
        "install", "taskpool", str(checks.CHART), "--namespace", NAMESPACE, "--dry-run=client",
        "--set", "monitoring.serviceMonitor.enabled=true", "--set", "monitoring.podMonitor.enabled=true",
    ).stdout  # fmt: skip
    assert "set monitoring.serviceMonitor.enabled" not in quiet
