"""Offline checks of everything under deploy/.

* The Helm chart is rendered by real Helm (the Go SDK, v4, loaded through ``helm-python-sdk``;
  no ``helm`` binary and no cluster needed), linted, and every rendered object is validated
  against the Kubernetes OpenAPI schemas shipped in ``kubernetes-validate`` (strict: unknown
  fields are errors) for the oldest and newest Kubernetes the chart supports.
* The dask-kubernetes CRDs (``DaskCluster``, ``DaskAutoscaler``) have no schema there: their
  structure is checked against a small JSON schema below, and their embedded pod specs and
  service spec are validated as real ``Pod`` / ``Service`` objects.
* Dockerfiles are linted in Python (pinned bases, non-root user, no secrets, pip cache off).

Each checker is also run on a deliberately broken input, so a checker that silently
accepts everything fails the suite.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

helm = pytest.importorskip("helm_python", reason="helm-python-sdk (test extra) renders the chart")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEPLOY = REPO_ROOT / "deploy"
CHART = DEPLOY / "helm" / "gridscope"
RELEASE = "gs"
NAMESPACE = "geo"

#: Oldest (Chart.yaml kubeVersion) and newest Kubernetes schemas to validate against.
KUBE_VERSIONS = ("1.27", kubernetes_validate.latest_version())

#: Value sets the chart must render cleanly with: defaults plus every ci/*-values.yaml.
VALUE_FILES = sorted((CHART / "ci").glob("*-values.yaml"))

CRD_GROUP = "kubernetes.dask.org/v1"


# --------------------------------------------------------------------------- helpers


def _values(name: str) -> dict[str, Any]:
    if name == "defaults":
        return {}
    return yaml.safe_load((CHART / "ci" / name).read_text()) or {}


def _render(values: dict[str, Any] | None = None) -> dict[str, str]:
    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(values or {}, name=RELEASE, namespace=NAMESPACE)


def _objects(rendered: dict[str, str]) -> list[dict[str, Any]]:
    objects = []
    for path, text in sorted(rendered.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def _by_kind(objects: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def _one(objects: Iterable[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = _by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


# ----------------------------------------------------------------- dask-kubernetes CRDs

_OBJECT = {"type": "object"}
_META = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"}},
}

#: Structure of the dask-kubernetes operator resources (kubernetes.dask.org/v1), written
#: from the operator's CRDs: only the fields this chart uses, unknown top-level keys refused.
CRD_SCHEMAS: dict[str, dict[str, Any]] = {
    "DaskCluster": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": CRD_GROUP},
            "kind": {"const": "DaskCluster"},
            "metadata": _META,
            "spec": {
                "type": "object",
                "required": ["worker", "scheduler"],
                "additionalProperties": False,
                "properties": {
                    "idleTimeout": {"type": "integer", "minimum": 0},
                    "worker": {
                        "type": "object",
                        "required": ["spec"],
                        "additionalProperties": False,
                        "properties": {
                            "replicas": {"type": "integer", "minimum": 0},
                            "spec": _OBJECT,
                            "metadata": _OBJECT,
                        },
                    },
                    "scheduler": {
                        "type": "object",
                        "required": ["spec", "service"],
                        "additionalProperties": False,
                        "properties": {"spec": _OBJECT, "service": _OBJECT, "metadata": _OBJECT},
                    },
                },
            },
        },
    },
    "DaskAutoscaler": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": CRD_GROUP},
            "kind": {"const": "DaskAutoscaler"},
            "metadata": _META,
            "spec": {
                "type": "object",
                "required": ["cluster", "minimum", "maximum"],
                "additionalProperties": False,
                "properties": {
                    "cluster": {"type": "string", "minLength": 1},
                    "minimum": {"type": "integer", "minimum": 0},
                    "maximum": {"type": "integer", "minimum": 1},
                },
            },
        },
    },
}


def validate_manifest(obj: dict[str, Any], kube_version: str) -> None:
    """Validate one Kubernetes object offline; raise on any schema violation.

    Core kinds go through kubernetes-validate in strict mode. Dask operator kinds are
    checked against ``CRD_SCHEMAS`` and their embedded pod/service specs are validated as
    real ``Pod`` / ``Service`` objects.
    """
    if obj.get("apiVersion") == CRD_GROUP:
        schema = CRD_SCHEMAS.get(obj.get("kind", ""))
        if schema is None:
            raise ValueError(f"no schema for {CRD_GROUP} kind {obj.get('kind')!r}")
        jsonschema.validate(obj, schema)
        if obj["kind"] == "DaskAutoscaler":
            if obj["spec"]["minimum"] > obj["spec"]["maximum"]:
                raise ValueError("DaskAutoscaler minimum > maximum")
            return
        name = obj["metadata"]["name"]
        for role in ("worker", "scheduler"):
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"{name}-{role}"},
                "spec": obj["spec"][role]["spec"],
            }
            kubernetes_validate.validate(pod, kube_version, strict=True)
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": f"{name}-scheduler"},
            "spec": obj["spec"]["scheduler"]["service"],
        }
        kubernetes_validate.validate(service, kube_version, strict=True)
        return
    kubernetes_validate.validate(obj, kube_version, strict=True)


# --------------------------------------------------------------------------- Helm chart


def test_chart_lints_clean() -> None:
    for values in [{}, *(_values(f.name) for f in VALUE_FILES)]:
        report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE)
        assert report["errors"] == [], report
        problems = [m for m in report["messages"] if m["severity"] >= 2]  # warning or error
        assert problems == [], problems


@pytest.mark.parametrize("values_name", ["defaults", *(f.name for f in VALUE_FILES)])
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_rendered_manifests_are_valid_kubernetes(values_name: str, kube_version: str) -> None:
    objects = _objects(_render(_values(values_name)))
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "ServiceAccount"} <= kinds
    for obj in objects:
        validate_manifest(obj, kube_version)
    names = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(names) == len(set(names)), f"duplicate objects: {names}"


def test_validator_rejects_broken_manifests() -> None:
    deployment = _one(_objects(_render()), "Deployment")
    validate_manifest(deployment, KUBE_VERSIONS[0])

    typo = yaml.safe_load(yaml.safe_dump(deployment))
    typo["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_manifest(typo, KUBE_VERSIONS[0])

    wrong_type = yaml.safe_load(yaml.safe_dump(deployment))
    wrong_type["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_manifest(wrong_type, KUBE_VERSIONS[-1])

    cluster = _one(_objects(_render(_values("full-values.yaml"))), "DaskCluster")
    no_worker = yaml.safe_load(yaml.safe_dump(cluster))
    del no_worker["spec"]["worker"]
    with pytest.raises(jsonschema.ValidationError):
        validate_manifest(no_worker, KUBE_VERSIONS[0])

    bad_pod = yaml.safe_load(yaml.safe_dump(cluster))
    bad_pod["spec"]["worker"]["spec"]["containers"][0]["args"] = "dask worker"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_manifest(bad_pod, KUBE_VERSIONS[0])

    with pytest.raises(ValueError, match="no schema"):
        validate_manifest({"apiVersion": CRD_GROUP, "kind": "DaskJob"}, KUBE_VERSIONS[0])


def test_server_pod_is_hardened_and_probed() -> None:
    deployment = _one(_objects(_render()), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/tmp"}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/liveness", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 5006, "protocol": "TCP"}]
    assert container["resources"]["limits"]["memory"]
    assert container["command"] == ["gridscope"]
    assert container["args"][:5] == ["serve", "--address", "0.0.0.0", "--port", "5006"]
    assert "--public" in container["args"]
    assert ":" in container["image"] and not container["image"].endswith(":latest")


def test_public_service_wiring_with_ingress() -> None:
    objects = _objects(_render(_values("full-values.yaml")))
    deployment = _one(objects, "Deployment")
    container = _container(deployment)
    args, env = container["args"], _env(container)

    # websocket origins: explicit list wins over ingress hosts
    assert args[args.index("--allow-websocket-origin") + 1] == "maps.example.org"
    assert "@sha256:" in container["image"]

    # catalog ConfigMap mounted where GRIDSCOPE_CATALOG points
    configmap = _one(objects, "ConfigMap")
    catalog = yaml.safe_load(configmap["data"]["catalog.yaml"])
    assert catalog == _values("full-values.yaml")["catalog"]
    (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if "configMap" in v]
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True
    assert env["GRIDSCOPE_CATALOG"] == f"{mount['mountPath']}/catalog.yaml"

    # signed sessions from the chart's Secret
    secret = _one(objects, "Secret")
    assert env["BOKEH_SIGN_SESSIONS"] == "true"
    ref = env["BOKEH_SECRET_KEY"]["secretKeyRef"]
    assert ref["name"] == secret["metadata"]["name"]
    assert ref["key"] in secret["data"]

    # Service selects the pods; Ingress routes to the Service with sticky cookies
    service = _one(objects, "Service")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    ingress = _one(objects, "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {
        "name": service["metadata"]["name"],
        "port": {"number": service["spec"]["ports"][0]["port"]},
    }
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600
    assert ingress["spec"]["tls"][0]["secretName"] == "gridscope-tls"


def test_websocket_origins_default_to_ingress_hosts() -> None:
    values = {"ingress": {"enabled": True, "hosts": [{"host": "a.example.org", "paths": ["/"]}]}}
    args = _container(_one(_objects(_render(values)), "Deployment"))["args"]
    assert args[args.index("--allow-websocket-origin") + 1] == "a.example.org"
    args = _container(_one(_objects(_render()), "Deployment"))["args"]
    assert "--allow-websocket-origin" not in args


def test_operator_mode_points_the_server_at_its_daskcluster() -> None:
    objects = _objects(_render(_values("full-values.yaml")))
    cluster = _one(objects, "DaskCluster")
    autoscaler = _one(objects, "DaskAutoscaler")
    name = cluster["metadata"]["name"]
    assert autoscaler["spec"]["cluster"] == name
    assert autoscaler["spec"]["minimum"] <= autoscaler["spec"]["maximum"]
    env = _env(_container(_one(objects, "Deployment")))
    assert env["DASK_SCHEDULER_ADDRESS"] == f"tcp://{name}-scheduler.{NAMESPACE}.svc:8786"
    worker = cluster["spec"]["worker"]["spec"]["containers"][0]
    assert worker["args"][:2] == ["dask", "worker"]
    assert worker["image"] == _container(_one(objects, "Deployment"))["image"]
    assert worker["securityContext"]["allowPrivilegeEscalation"] is False


def test_gateway_and_scheduler_modes() -> None:
    objects = _objects(_render(_values("gateway-values.yaml")))
    container = _container(_one(objects, "Deployment"))
    env = _env(container)
    assert env["DASK_GATEWAY__ADDRESS"] == "http://traefik-daskhub-dask-gateway.daskhub"
    assert env["DASK_GATEWAY__AUTH__TYPE"] == "jupyterhub"
    assert env["JUPYTERHUB_API_TOKEN"]["secretKeyRef"]["name"] == "gridscope-hub-token"
    # an existing session secret: the chart creates none and references it
    assert _by_kind(objects, "Secret") == []
    assert env["BOKEH_SECRET_KEY"]["secretKeyRef"]["name"] == "gridscope-sessions"
    assert _by_kind(objects, "DaskCluster") == []

    objects = _objects(_render(_values("scheduler-values.yaml")))
    container = _container(_one(objects, "Deployment"))
    env = _env(container)
    assert env["DASK_SCHEDULER_ADDRESS"] == "tcp://dask-scheduler.dask:8786"
    assert "--public" not in container["args"]
    assert "BOKEH_SECRET_KEY" not in env and _by_kind(objects, "Secret") == []


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"dask": {"mode": "kubernetes"}}, "dask.mode must be"),
        ({"dask": {"mode": "scheduler"}}, "dask.schedulerAddress is required"),
        ({"dask": {"mode": "gateway"}}, "dask.gateway.address is required"),
        ({"sessions": {"secretKey": "too-short"}}, "at least 32 characters"),
        ({"server": {"numProcs": 0}}, "server.numProcs must be a whole number of at least 1"),
        (
            {
                "server": {"numProcs": 2},
                "dask": {"mode": "gateway", "gateway": {"address": "http://g"}},
            },
            "server.numProcs > 1 needs one scheduler address",
        ),
        (
            {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}},
            "autoscaling needs 1 <= minReplicas <= maxReplicas",
        ),
        (
            {"autoscaling": {"enabled": True}, "resources": {"requests": {"cpu": None}}},
            "measured against resources.requests.cpu",
        ),
    ],
)
def test_bad_values_fail_to_render(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmError, match=re.escape(message)):
        _render(values)


def test_generated_session_key_is_random_and_long() -> None:
    keys = {_one(_objects(_render()), "Secret")["data"]["BOKEH_SECRET_KEY"] for _ in range(2)}
    assert len(keys) == 2
    assert all(len(k) >= 44 for k in keys)  # base64 of >= 32 bytes


def _quantity(text: str) -> float:
    """A Kubernetes quantity (``2Gi``, ``500M``, ``1``) in bytes / units."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}
    for suffix, factor in units.items():
        if str(text).endswith(suffix):
            return float(str(text)[: -len(suffix)]) * factor
    return float(text)


def test_hpa_scales_the_deployment_on_cpu() -> None:
    objects = _objects(_render(_values("full-values.yaml")))
    deployment, hpa = _one(objects, "Deployment"), _one(objects, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": deployment["metadata"]["name"],
    }  # fmt: skip
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300
    # the HPA owns the replica count; utilisation is measured against the CPU request
    assert "replicas" not in deployment["spec"]
    assert _quantity(_container(deployment)["resources"]["requests"]["cpu"]) > 0
    # off by default: a fixed replica count and no HPA
    objects = _objects(_render())
    assert _by_kind(objects, "HorizontalPodAutoscaler") == []
    assert _one(objects, "Deployment")["spec"]["replicas"] == 1


def test_sticky_sessions_at_service_and_ingress() -> None:
    objects = _objects(_render(_values("full-values.yaml")))
    service = _one(objects, "Service")
    assert service["spec"]["sessionAffinity"] == "ClientIP"
    assert service["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"] >= 3600
    annotations = _one(objects, "Ingress")["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    assert annotations["nginx.ingress.kubernetes.io/affinity-mode"] == "persistent"
    assert annotations["nginx.ingress.kubernetes.io/session-cookie-name"]
    service = _one(_objects(_render({"service": {"sessionAffinity": "None"}})), "Service")
    assert service["spec"]["sessionAffinity"] == "None"
    assert "sessionAffinityConfig" not in service["spec"]


def test_num_procs_and_the_shared_answer_cache() -> None:
    deployment = _one(_objects(_render(_values("full-values.yaml"))), "Deployment")
    container, pod = _container(deployment), deployment["spec"]["template"]["spec"]
    assert _parse_cli(container["args"]).num_procs == 2
    env = _env(container)
    (mount,) = [
        m for m in container["volumeMounts"] if m["mountPath"] == env["GRIDSCOPE_CACHE_DIR"]
    ]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert "medium" not in volume["emptyDir"]  # node disk, one directory per pod
    limits = pytest.importorskip("app.limits")
    kept = limits.parse_bytes(env["GRIDSCOPE_CACHE_BYTES"])
    assert 0 < kept <= _quantity(volume["emptyDir"]["sizeLimit"])
    assert _parse_cli(_container(_one(_objects(_render()), "Deployment"))["args"]).num_procs == 1
    # switched off: no volume, and gridscope keeps no answer directory
    deployment = _one(_objects(_render({"answerCache": {"enabled": False}})), "Deployment")
    assert _env(_container(deployment))["GRIDSCOPE_CACHE_DIR"] == "off"
    assert {v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]} == {"scratch"}


def test_notes_mention_mode_and_origins() -> None:
    notes = _render(_values("full-values.yaml"))["gridscope/templates/NOTES.txt"]
    assert "Server processes per pod: 2; pods: 2-6 (HPA on CPU" in notes
    assert "https://gridscope.example.org/" in notes
    assert "dask-kubernetes operator" in notes
    assert "signed" in notes


# ------------------------------------------------------------------- static manifests


def _static_manifest_files(root: Path) -> list[Path]:
    """Kubernetes manifests kept as plain YAML under deploy/ (not chart parts or values)."""
    files = []
    for path in sorted([*root.rglob("*.yaml"), *root.rglob("*.yml")]):
        rel = path.relative_to(root).parts
        if "helm" in rel or path.name.startswith("values") or path.name.endswith("-values.yaml"):
            continue
        files.append(path)
    return files


def test_static_manifests_are_valid_kubernetes() -> None:
    for path in _static_manifest_files(DEPLOY):
        for obj in yaml.safe_load_all(path.read_text()):
            if obj:
                for version in KUBE_VERSIONS:
                    validate_manifest(obj, version)


def test_static_manifest_discovery(tmp_path: Path) -> None:
    (tmp_path / "helm" / "c" / "templates").mkdir(parents=True)
    (tmp_path / "helm" / "c" / "templates" / "x.yaml").write_text("{{ .Values }}")
    (tmp_path / "daskhub").mkdir()
    (tmp_path / "daskhub" / "values.yaml").write_text("a: 1")
    bad = tmp_path / "kubernetes" / "svc.yaml"
    bad.parent.mkdir()
    bad.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {prots: []}\n")
    assert _static_manifest_files(tmp_path) == [bad]
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_manifest(yaml.safe_load(bad.read_text()), KUBE_VERSIONS[0])


# --------------------------------------------------------------------------- daskhub


def test_daskhub_values() -> None:
    values = yaml.safe_load((DEPLOY / "daskhub" / "values.yaml").read_text())
    singleuser = values["jupyterhub"]["singleuser"]
    image = singleuser["image"]
    assert image["tag"] and image["tag"] != "latest"
    backend = values["dask-gateway"]["gateway"]["backend"]["image"]
    assert (backend["name"], backend["tag"]) == (image["name"], image["tag"])
    assert singleuser["extraEnv"]["DASK_GATEWAY__CLUSTER__OPTIONS__IMAGE"] == "{JUPYTER_IMAGE_SPEC}"
    for name, code in values["dask-gateway"]["gateway"]["extraConfig"].items():
        compile(code, f"daskhub extraConfig {name}", "exec")
    assert not _secret_looking_values(values), _secret_looking_values(values)


_SECRET_NAME = re.compile(r"(password|secret|token|apikey|api_key|private_?key)", re.IGNORECASE)


def _secret_looking_values(tree: Any, path: str = "") -> list[str]:
    found = []
    if isinstance(tree, dict):
        for key, value in tree.items():
            here = f"{path}.{key}"
            if _SECRET_NAME.search(str(key)) and isinstance(value, str | int) and value != "":
                found.append(here)
            found.extend(_secret_looking_values(value, here))
    elif isinstance(tree, list):
        for i, item in enumerate(tree):
            found.extend(_secret_looking_values(item, f"{path}[{i}]"))
    return found


def test_secret_detector_flags_tokens() -> None:
    tree = {"hub": {"services": {"dask-gateway": {"apiToken": "abc"}}}, "x": [{"password": 1}]}
    assert _secret_looking_values(tree) == [
        ".hub.services.dask-gateway.apiToken",
        ".x[0].password",
    ]


# --------------------------------------------------------------------------- Dockerfiles

DOCKERFILES = sorted([*DEPLOY.rglob("Dockerfile"), *DEPLOY.rglob("Dockerfile.*")])
SERVER_DOCKERFILES = [p for p in DOCKERFILES if p.parent.name == "docker"]

_SECRET_VAR = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|KEY|CREDENTIAL)", re.IGNORECASE)
_EXACT_TAG = re.compile(r"(?<![\d.])\d+\.\d+\.\d+")  # major.minor.patch


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, rest = current.partition(" ")
        result.append((keyword.upper(), rest.strip()))
        current = ""
    return result


def _env_assignments(args: str) -> list[tuple[str, str]]:
    words = shlex.split(args)
    if len(words) >= 2 and "=" not in words[0]:  # legacy "ENV NAME value"
        return [(words[0], " ".join(words[1:]))]
    return [tuple(w.split("=", 1)) if "=" in w else (w, "") for w in words]  # type: ignore[misc]


def lint_dockerfile(text: str) -> list[str]:
    """Return the problems found in one Dockerfile (empty when it passes)."""
    problems: list[str] = []
    instructions = _instructions(text)
    stages: set[str] = set()
    user = None
    for keyword, args in instructions:
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            image = words[0]
            if len(words) >= 3 and words[1].upper() == "AS":
                stages.add(words[2].lower())
            user = None  # each stage starts as root again
            if image.lower() in stages or image == "scratch":
                continue
            if "$" in image:
                problems.append(f"FROM {image}: base image from a variable cannot be checked")
                continue
            name, _, digest = image.partition("@")
            tag = name.rpartition(":")[2] if ":" in name.rpartition("/")[2] else ""
            if not digest and (not tag or tag == "latest" or not _EXACT_TAG.search(tag)):
                problems.append(f"FROM {image}: pin an exact version tag (or a digest)")
        elif keyword == "USER":
            user = args.split()[0]
        elif keyword in {"ENV", "ARG"}:
            for name, value in _env_assignments(args):
                if _SECRET_VAR.search(name) and value:
                    problems.append(f"{keyword} {name}: secrets must not be baked into images")
        elif keyword == "RUN":
            for command in re.split(r"&&|;|\|\|", args):
                if re.search(r"\bpip3?\s+(install|wheel)\b", command) and (
                    "--no-cache-dir" not in command
                ):
                    problems.append(f"RUN {command.strip()}: use pip --no-cache-dir")
    if not any(k == "FROM" for k, _ in instructions):
        problems.append("no FROM")
    if user is None:
        problems.append("final stage runs as root: add a non-root USER")
    elif user.split(":")[0] in {"root", "0"}:
        problems.append(f"USER {user}: final stage must not run as root")
    return problems


def test_there_are_dockerfiles() -> None:
    names = {p.relative_to(DEPLOY).as_posix() for p in DOCKERFILES}
    assert {"docker/Dockerfile", "docker/Dockerfile.conda", "daskhub/Dockerfile"} <= names


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_dockerfile_lint(path: Path) -> None:
    assert lint_dockerfile(path.read_text()) == []


@pytest.mark.parametrize("path", SERVER_DOCKERFILES, ids=lambda p: p.name)
def test_server_image_serves_on_5006_with_healthcheck(path: Path) -> None:
    instructions = dict(_instructions(path.read_text()))  # last of each kind wins
    assert instructions["EXPOSE"] == "5006"
    assert "/liveness" in instructions["HEALTHCHECK"]
    assert yaml.safe_load(instructions["CMD"]) == [
        "gridscope",
        "serve",
        "--port",
        "5006",
        "--address",
        "0.0.0.0",
    ]


@pytest.mark.parametrize(
    ("dockerfile", "problem"),
    [
        ("FROM python:latest\nUSER 1000\n", "pin an exact version tag"),
        ("FROM python\nUSER 1000\n", "pin an exact version tag"),
        ("FROM python:3.11-slim\nUSER 1000\n", "pin an exact version tag"),
        ("FROM python@sha256:abc\nUSER 1000\n", ""),
        ("FROM python:3.11.11-slim\nUSER 1000\n", ""),
        ("FROM python:3-slim\nUSER 1000\n", "pin an exact version tag"),
        ("FROM python:3.11.11-slim-bookworm\nRUN pip install x\n", "no-cache-dir"),
        ("FROM python:3.11.11-slim-bookworm\nUSER 1000\nUSER root\n", "must not run as root"),
        ("FROM python:3.11.11-slim-bookworm\n", "add a non-root USER"),
        ("FROM python:3.11.11-slim-bookworm AS b\nUSER 1000\nFROM b\n", "add a non-root USER"),
        ("FROM python:3.11.11\nENV API_TOKEN=abc123\nUSER 1000\n", "ENV API_TOKEN"),
        ("FROM python:3.11.11\nARG AWS_SECRET_ACCESS_KEY=x\nUSER 1000\n", "ARG AWS_SECRET"),
        ("FROM python:3.11.11\nENV DB_PASSWORD hunter2\nUSER 1000\n", "ENV DB_PASSWORD"),
        ("FROM python:3.11.11\nARG GITHUB_TOKEN\nUSER app\n", ""),
        (
            "FROM python:3.11.11\nRUN apt-get update \\\n && pip install \\\n  gridscope\nUSER 1\n",
            "no-cache-dir",
        ),
    ],
)
def test_dockerfile_lint_catches(dockerfile: str, problem: str) -> None:
    problems = lint_dockerfile(dockerfile)
    if problem:
        assert any(problem in p for p in problems), problems
    else:
        assert problems == []


def test_dockerignore_keeps_what_images_copy() -> None:
    """Every local COPY source must survive the root .dockerignore (build context = repo)."""
    patterns = (REPO_ROOT / ".dockerignore").read_text().split()
    kept = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    assert "*" in patterns  # allow-list: nothing else (no .venv, .git, bench data) is sent
    for path in DOCKERFILES:
        for keyword, args in _instructions(path.read_text()):
            if keyword != "COPY" or "--from=" in args:
                continue
            sources = [w for w in args.split() if not w.startswith("--")][:-1]
            for source in sources:
                assert source.rstrip("/") in kept, f"{path.name}: COPY {source} is dockerignored"
                assert (REPO_ROOT / source).exists(), f"{path.name}: COPY {source} missing"


# ------------------------------------------------------------- chart/image vs the CLI


def _parse_cli(argv: list[str]) -> Any:
    cli = pytest.importorskip("app.cli")
    parser = cli.build_parser()
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:  # argparse reports unknown flags this way
        raise AssertionError(f"gridscope rejects {argv}: exit {exc.code}") from None


@pytest.mark.parametrize("values_name", ["defaults", *(f.name for f in VALUE_FILES)])
def test_chart_args_are_accepted_by_gridscope_serve(values_name: str) -> None:
    container = _container(_one(_objects(_render(_values(values_name))), "Deployment"))
    args = _parse_cli(container["args"])
    assert args.command == "serve"
    assert (args.address, int(args.port)) == ("0.0.0.0", 5006)


@pytest.mark.parametrize("path", SERVER_DOCKERFILES, ids=lambda p: p.name)
def test_image_cmd_is_accepted_by_gridscope(path: Path) -> None:
    cmd = yaml.safe_load(dict(_instructions(path.read_text()))["CMD"])
    assert cmd[0] == "gridscope"
    assert _parse_cli(cmd[1:]).command == "serve"


def test_cli_check_rejects_unknown_flags() -> None:
    with pytest.raises(AssertionError, match="rejects"):
        _parse_cli(["serve", "--no-such-flag"])
