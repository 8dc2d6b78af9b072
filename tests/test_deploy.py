"""The deployment files: Dockerfile, docker-compose.yml, deploy/compose/edge.yaml and
deploy/kubernetes/. No Docker daemon here, so: they parse and agree with each other (ports,
paths, the config file they mount is the one tested), the compose topology runs as local
processes from that same edge.yaml, and the Kubernetes manifests pass a schema validator."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.support.edge import fetch, start_edge
from tests.support.net import free_port
from tests.support.procs import Proc, spawn, wait_tcp

REPO = Path(__file__).resolve().parent.parent
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
EDGE_YAML = REPO / "deploy" / "compose" / "edge.yaml"
APP_DIR = REPO / "examples" / "edge"
K8S = REPO / "deploy" / "kubernetes"
CONFIG_PATH = "/etc/edgecorn/edge.yaml"
K8S_VERSION = "1.30.0"  # a schema shipped inside kubernetes-validate: no network needed


def dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(
        r"\\\n",
        " ",
        "\n".join(
            line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")
        ),
    )
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
        for line in text.splitlines()
        if line.strip()
    ]


def one(instructions: list[tuple[str, str]], name: str) -> str:
    found = [args for kind, args in instructions if kind == name]
    assert len(found) == 1, (name, found)
    return found[0]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list)
    return [str(item) for item in value]


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def container_ports(ports: list[str]) -> set[str]:
    """'443:443/udp' -> '443/udp' (the container side; tcp when not said)."""
    out = set()
    for port in ports:
        spec, _, proto = str(port).partition("/")
        out.add(f"{spec.rsplit(':', 1)[-1]}/{proto or 'tcp'}")
    return out


def bind_port(bind: str) -> int:
    return int(bind.rsplit(":", 1)[1])


# --------------------------------------------------------------------------- agreement


def test_dockerfile_is_what_the_issue_asks() -> None:
    steps = dockerfile(DOCKERFILE)
    assert re.fullmatch(r"python:3\.\d+-slim", one(steps, "FROM"))
    assert set(one(steps, "EXPOSE").split()) == {"443/tcp", "443/udp", "80/tcp"}
    assert one(steps, "USER") not in ("root", "0")
    run = " ".join(args for kind, args in steps if kind == "RUN")
    assert "pip install" in run and "uvloop" in run and "useradd" in run
    assert exec_form(one(steps, "ENTRYPOINT")) == ["edgecorn", "-c", CONFIG_PATH]
    check = one(steps, "HEALTHCHECK")
    command = exec_form(check.split("CMD", 1)[1])
    copies = {args.split()[-1]: args.split()[0] for kind, args in steps if kind == "COPY"}
    assert command[0] == "python" and command[1] in copies  # the script the image copies in
    for dest, source in copies.items():
        assert (REPO / source).exists(), (dest, source)


def test_compose_agrees_with_the_dockerfile_and_edge_yaml() -> None:
    services = compose()["services"]
    assert set(services) == {"edge", "app"}
    edge, app = services["edge"], services["app"]
    steps = dockerfile(DOCKERFILE)
    # The edge is built from the top-level Dockerfile and publishes what it exposes.
    assert edge["build"] == "."
    assert container_ports(edge["ports"]) == set(one(steps, "EXPOSE").split())
    assert {str(p).split(":")[0] for p in edge["ports"]} == {"443", "80"}  # same ports outside
    # It mounts this very edge.yaml where the ENTRYPOINT reads it, and the certificates
    # where the file's relative certificate paths point.
    mounts = {v.split(":")[1]: v.split(":")[0] for v in edge["volumes"]}
    assert (REPO / mounts[CONFIG_PATH]).resolve() == EDGE_YAML
    settings = yaml.safe_load(EDGE_YAML.read_text())
    config_dir = os.path.dirname(CONFIG_PATH)
    for key in ("certfile", "keyfile"):
        inside = os.path.normpath(os.path.join(config_dir, settings[key]))
        mount = next(target for target in mounts if inside.startswith(target + "/"))
        assert mounts[mount] == "./certs"
        assert os.path.basename(inside) in ("localhost.pem", "localhost.key")  # edgecorn certs
    # The file listens on what the image exposes.
    assert {bind_port(b) for b in settings["bind"]} == {443}
    assert {bind_port(b) for b in settings["insecure_bind"]} == {80}
    # The edge's upstream is the app service, on the port the app's image serves.
    [upstream] = [r["proxy"] for r in settings["routes"] if "proxy" in r]
    parts = urlsplit(upstream)
    app_steps = dockerfile(APP_DIR / "Dockerfile")
    app_cmd = exec_form(one(app_steps, "CMD"))
    assert parts.hostname == "app" and str(parts.port) == app_cmd[app_cmd.index("--port") + 1]
    assert app["build"] == "./examples/edge" and [str(p) for p in app["expose"]] == ["8000"]
    assert one(app_steps, "EXPOSE") == "8000"
    # Health checks on both; the edge starts after the app is healthy; a stop gives the
    # edge more time than its graceful_timeout.
    assert edge["healthcheck"]["test"][1:] == exec_form(one(steps, "HEALTHCHECK").split("CMD")[1])
    assert "healthz" in " ".join(app["healthcheck"]["test"])
    assert edge["depends_on"]["app"]["condition"] == "service_healthy"
    assert int(edge["stop_grace_period"].rstrip("s")) > settings["graceful_timeout"]
    # The healthz route the health checks ask for exists.
    assert {"path": "=/healthz", "respond": {"status": 200, "body": "ok\n"}} in settings["routes"]


def test_edge_yaml_passes_edgecorn_check(certs: tuple[str, str, str]) -> None:
    """The very file (certificates from env: ./certs is generated, not in the repo)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGECORN_")}
    env.update(PYTHONPATH=str(REPO), EDGECORN_CERTFILE=certs[0], EDGECORN_KEYFILE=certs[1])
    result = subprocess.run(
        [sys.executable, "-m", "edgecorn", "check", str(EDGE_YAML)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:9] == [
        "listeners:",
        "  https://0.0.0.0:443  TCP, TLS (h2, http/1.1)",
        "  http://0.0.0.0:80  TCP, cleartext (http/1.1, h2c)",
        "  quic://0.0.0.0:443  UDP, QUIC (h3)",
        "routes:",
        "  *=/healthz -> respond",
        "  */ -> proxy http://app:8000",
        "certificates:",
        lines[8],
    ]
    assert lines[-2:] == [
        "from the environment: EDGECORN_CERTFILE, EDGECORN_KEYFILE",
        f"{EDGE_YAML}: OK",
    ]


# --------------------------------------------------------------------------- the topology


def start_app(log_dir: Path) -> Proc:
    """The app service's CMD from its Dockerfile, with the port made free and local."""
    cmd = exec_form(one(dockerfile(APP_DIR / "Dockerfile"), "CMD"))
    port = free_port()
    cmd[cmd.index("--host") + 1] = "127.0.0.1"
    cmd[cmd.index("--port") + 1] = str(port)
    assert cmd[0] == "uvicorn"
    proc = spawn("app", [sys.executable, "-m", *cmd], log_dir, cwd=APP_DIR)
    proc.port = port
    wait_tcp(proc, port)
    return proc


def test_compose_topology_as_local_processes(
    tmp_path: Path, certs: tuple[str, str, str], cafile: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """app (Uvicorn, as its image runs it) behind edgecorn run from deploy/compose/edge.yaml:
    only the upstream's address is rewritten (no `app` host here); the binds come from env
    and the certificates sit where the compose file mounts them, next to the file."""
    app = start_app(tmp_path / "logs")
    edge = None
    try:
        site = tmp_path / "etc-edgecorn"
        (site / "certs").mkdir(parents=True)
        shutil.copy(certs[0], site / "certs" / "localhost.pem")
        shutil.copy(certs[1], site / "certs" / "localhost.key")
        text = EDGE_YAML.read_text()
        assert text.count("http://app:8000") == 1
        (site / "edge.yaml").write_text(
            text.replace("http://app:8000", f"http://127.0.0.1:{app.port}")
        )
        tls_port, plain_port = free_port(), free_port()
        monkeypatch.setenv("EDGECORN_BIND", f"127.0.0.1:{tls_port}")  # start_edge passes env
        monkeypatch.setenv("EDGECORN_INSECURE_BIND", f"127.0.0.1:{plain_port}")
        edge = start_edge(site / "edge.yaml", tls_port, tmp_path / "logs")
        for proto in ("h1", "h2", "h3"):
            reply = fetch(
                proto, f"https://localhost:{tls_port}/hello?x=1", cafile, tmp_path / "curl"
            )
            assert reply.status == 200, f"{proto}: {reply}\n{edge.describe()}"
            seen = reply.json()
            assert (seen["app"], seen["path"]) == ("example", "/hello")
            assert seen["forwarded"]["x-forwarded-proto"] == "https"
            assert seen["forwarded"]["x-forwarded-for"] == "127.0.0.1"
        reply = fetch("h1", f"http://127.0.0.1:{plain_port}/plain", cafile, tmp_path / "curl")
        assert reply.status == 200 and reply.json()["forwarded"]["x-forwarded-proto"] == "http"
        health = fetch("h2", f"https://localhost:{tls_port}/healthz", cafile, tmp_path / "curl")
        assert (health.status, health.body) == (200, b"ok\n")
        # The image's HEALTHCHECK script, against this edge and against nothing.
        script = str(REPO / "deploy" / "healthcheck.py")
        for url, status in (
            (f"https://127.0.0.1:{tls_port}/healthz", 0),
            (f"https://127.0.0.1:{free_port()}/healthz", 1),
        ):
            result = subprocess.run(
                [sys.executable, script],
                capture_output=True,
                text=True,
                timeout=30,
                env={**os.environ, "HEALTHCHECK_URL": url},
            )
            assert result.returncode == status, (url, result.stderr)
        # The access log (stdout) is JSON, one object per request answered.
        lines = [line for line in edge.stdout().splitlines() if line.strip()]
        records = [json.loads(line) for line in lines]
        assert {r["path"] for r in records} >= {"/hello", "/plain"}
    finally:
        for proc in (edge, app):
            if proc is not None:
                proc.stop()


# --------------------------------------------------------------------------- kubernetes


def manifests() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            out[doc["kind"]] = doc
    return out


def test_kubernetes_manifests_pass_the_schema_validator() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    found = manifests()
    assert set(found) == {"ConfigMap", "Secret", "Deployment", "Service"}
    for doc in found.values():
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    # ...and the validator does catch a broken one (a misspelt field, a bad port type).
    broken = yaml.safe_load(yaml.safe_dump(found["Deployment"]))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    broken = yaml.safe_load(yaml.safe_dump(found["Service"]))
    broken["spec"]["ports"][0]["port"] = "https"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_kubernetes_manifests_agree(tmp_path: Path, certs: tuple[str, str, str]) -> None:
    found = manifests()
    deployment, service = found["Deployment"], found["Service"]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    edge_text = found["ConfigMap"]["data"]["edge.yaml"]
    settings = yaml.safe_load(edge_text)
    assert deployment["spec"]["replicas"] >= 2
    # Graceful termination: preStop's sleep, then graceful_timeout, inside the grace period.
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > int(pre_stop[1]) + settings["graceful_timeout"]
    # Probes ask the route the edge answers itself, on a port it listens on.
    healthz = {"path": "=/healthz", "respond": {"status": 200, "body": "ok\n"}}
    assert healthz in settings["routes"]
    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert (get["path"], get["port"], get["scheme"]) == ("/healthz", 443, "HTTPS")
    # The Service is a LoadBalancer with TCP and UDP 443 (and 80) to the pod's ports.
    assert service["spec"]["type"] == "LoadBalancer"
    service_ports = {(p["port"], p["protocol"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert service_ports == {(443, "TCP", 443), (443, "UDP", 443), (80, "TCP", 80)}
    pod_ports = {(p["containerPort"], p["protocol"]) for p in container["ports"]}
    assert pod_ports == {(443, "TCP"), (443, "UDP"), (80, "TCP")}
    assert {bind_port(b) for b in settings["bind"] + settings["insecure_bind"]} == {443, 80}
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    # The ConfigMap lands where the image reads it; the Secret where edge.yaml points.
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["config"]["mountPath"] == CONFIG_PATH
    assert volumes["config"]["configMap"]["name"] == found["ConfigMap"]["metadata"]["name"]
    assert volumes["certs"]["secret"]["secretName"] == found["Secret"]["metadata"]["name"]
    assert found["Secret"]["type"] == "kubernetes.io/tls"
    certs_dir = mounts["certs"]["mountPath"]
    for key, name in (("certfile", "tls.crt"), ("keyfile", "tls.key")):
        assert os.path.join(os.path.dirname(CONFIG_PATH), settings[key]) == f"{certs_dir}/{name}"
    assert pod["securityContext"]["runAsNonRoot"] is True
    # The ConfigMap's edge.yaml, verbatim, with a certificate where the Secret puts it,
    # passes `edgecorn check`.
    (tmp_path / "certs").mkdir()
    shutil.copy(certs[0], tmp_path / "certs" / "tls.crt")
    shutil.copy(certs[1], tmp_path / "certs" / "tls.key")
    (tmp_path / "edge.yaml").write_text(edge_text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGECORN_")}
    result = subprocess.run(
        [sys.executable, "-m", "edgecorn", "check", str(tmp_path / "edge.yaml")],
        cwd=REPO,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "  */ -> proxy http://app:8000" in result.stdout.splitlines()
