"""Offline checks of charts/switchboard, run by scripts/test-chart (which installs the pinned
helm-python-sdk, the Helm v4 SDK, and kubernetes-validate into a venv and passes the binaries).

    chart_checks.py CHART EDGE_BIN ROUTER_BIN

Lints the chart (strict), renders every value set of CHART/ci/*-values.yaml (all with
nats.enabled=false: the NATS chart is a dependency that cannot be downloaded here), validates every
manifest against Kubernetes' schemas (strict), asserts what matters for running Switchboard, checks
that every flag of both binaries is reachable from values, and that wrong values are refused with a
message naming the field. Prints each check; exits non-zero with the reasons on any failure.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import yaml

KUBE_VERSION = "1.34.0"
RELEASE, NAMESPACE = "sb", "signal"

# Flags the chart deliberately does not expose, with the reason. Keep this tiny: a flag missing from
# the chart and from here fails the check, naming it.
NOT_EXPOSED = {
    "edge": {
        "SWITCHBOARD_READY_FILE": "for tests that start the binary; Kubernetes uses the probes",
        "SWITCHBOARD_API_LISTEN": "standalone edge only: the edge refuses it with --nats, the routers serve the API",
        "SWITCHBOARD_API_TOKEN_FILE": "goes with --api-listen (standalone edge only)",
        "SWITCHBOARD_API_STATE_FILE": "goes with --api-listen (standalone edge only)",
        "SWITCHBOARD_STATS_FILE": "standalone only: a cluster's statistics live in JetStream (routers)",
        "SWITCHBOARD_WEBHOOK_CA_FILE": "standalone only: in a cluster the routers send the webhooks (router has it)",
    },
    "router": {
        "SWITCHBOARD_READY_FILE": "for tests that start the binary; Kubernetes uses the probes",
        "SWITCHBOARD_API_STATE_FILE": "standalone only: a cluster keeps API tenants in the sb-tenants bucket",
    },
}
# Values the chart sets on purpose to something other than the binary's default.
NOT_DEFAULT = {
    "SWITCHBOARD_LOG_FORMAT": "json for log collectors",
    "SWITCHBOARD_LISTEN": "all interfaces of the pod",
    "SWITCHBOARD_ADMIN_LISTEN": "all interfaces of the pod (the NetworkPolicy guards it)",
}
# Networks a TURN relay must never reach (coturn's denied-peer-ip must cover each).
MUST_DENY = [
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16",
    "100.64.0.0/10", "224.0.0.0/4", "0.0.0.0/8", "240.0.0.0/4",
    "::1/128", "fc00::/7", "fe80::/10", "ff00::/8", "::ffff:0:0/96",
]
CRDS = {"ServiceMonitor", "PrometheusRule", "HTTPRoute"}

failures: list[str] = []


def check(ok: bool, what: str) -> bool:
    if not ok:
        failures.append(what)
        print(f"  FAIL {what}")
    return ok


def say(msg: str) -> None:
    print(msg, flush=True)


def seconds(duration: str) -> float:
    """A duration of the binaries' syntax (humantime subset: number-unit pairs)."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"([0-9]+)\s*(ms|s|m|h|d)", duration)
    if not parts or re.sub(r"[0-9]+\s*(ms|s|m|h|d)\s*", "", duration):
        raise ValueError(f"unparsable duration {duration!r}")
    return sum(int(n) * units[u] for n, u in parts)


def help_flags(binary: str) -> tuple[set[str], dict[str, str]]:
    """The SWITCHBOARD_* and OTEL_* variables of a binary's --help, and their defaults where it shows one."""
    text = subprocess.run([binary, "--help"], check=True, capture_output=True, text=True).stdout
    envs, defaults = set(), {}
    for block in re.split(r"\n(?=\s{2,6}-)", text):
        m = re.search(r"\[env: ((?:SWITCHBOARD|OTEL)_[A-Z0-9_]+)", block)
        if not m:
            continue
        envs.add(m.group(1))
        d = re.search(r"\[default: ([^\]]*)\]", block)
        if d:
            defaults[m.group(1)] = d.group(1)
    return envs, defaults


def render(chart: helm.Chart, values: dict) -> list[dict]:
    chart.validate_schema(values)  # as helm install does
    out = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc["__template"] = path
                docs.append(doc)
    return docs


def find(docs, kind, name_suffix=None):
    return [d for d in docs if d["kind"] == kind
            and (name_suffix is None or d["metadata"]["name"].endswith(name_suffix))]


def env_of(container) -> dict:
    return {e["name"]: e for e in container.get("env", [])}


def nulls(node, path=""):
    """Paths of keys rendered empty (`volumeMounts:` with nothing under it): sloppy, and some
    clients refuse them."""
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in ([f"{path}.{k}"] if v is None else nulls(v, f"{path}.{k}"))]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in nulls(v, f"{path}[{i}]")]
    return []


def validate_k8s(docs, label):
    crd_seen = set()
    for d in docs:
        empty = nulls(d)
        check(not empty, f'{label}: {d["kind"]}/{d["metadata"]["name"]} has empty keys {empty}')
        body = {k: v for k, v in d.items() if k != "__template"}
        name = f'{d["kind"]}/{d["metadata"]["name"]}'
        if d["kind"] in CRDS:
            crd_seen.add(d["kind"])
            check_crd(body, name)
            continue
        try:
            kubernetes_validate.validate(body, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            check(False, f"{label}: {name} is not a valid {KUBE_VERSION} object: {e.message} at {list(e.path)}")
    return crd_seen


def check_crd(body, name):
    """The CRDs are not in kubernetes-validate's schemas: check what their controllers need."""
    spec = body.get("spec", {})
    check(bool(body["metadata"].get("name")) and bool(body["metadata"].get("namespace")), f"{name}: name and namespace")
    if body["kind"] == "ServiceMonitor":
        check(body["apiVersion"] == "monitoring.coreos.com/v1", f"{name}: apiVersion")
        check(bool(spec.get("selector", {}).get("matchLabels")), f"{name}: selector.matchLabels")
        for ep in spec.get("endpoints", []):
            check(ep.get("port") == "admin" and ep.get("path") == "/metrics", f"{name}: scrapes admin /metrics")
    elif body["kind"] == "PrometheusRule":
        check(body["apiVersion"] == "monitoring.coreos.com/v1", f"{name}: apiVersion")
        groups = spec.get("groups", [])
        check(bool(groups), f"{name}: has groups")
        for g in groups:
            check(isinstance(g.get("name"), str) and bool(g.get("rules")), f"{name}: group {g.get('name')} has rules")
            for r in g.get("rules", []):
                check(("alert" in r) != ("record" in r) and isinstance(r.get("expr"), str),
                      f"{name}: rule {r.get('alert') or r.get('record')} has alert xor record and expr")
                check("{{" not in r.get("expr", ""), f"{name}: rule {r.get('alert')} expr has no template left")
    elif body["kind"] == "HTTPRoute":
        check(body["apiVersion"] == "gateway.networking.k8s.io/v1", f"{name}: apiVersion")
        check(bool(spec.get("parentRefs")), f"{name}: parentRefs")
        for rule in spec.get("rules", []):
            for t in (rule.get("timeouts") or {}).values():
                check(bool(re.fullmatch(r"([0-9]{1,5}(h|m|s|ms)){1,4}", t)), f"{name}: timeout {t!r} is a Gateway API duration")


def check_monitoring(docs, values, label, chart_dir):
    """With alerts and dashboards on: the PrometheusRule carries every alert of the chart's rule file
    (the file promtool tests and scripts/test-dashboards evaluates), with this release's slot count and
    runbook address; one ConfigMap per dashboard, labelled for Grafana's sidecar, holding the JSON."""
    if values.get("alerts", {}).get("enabled"):
        source = yaml.safe_load(Path(chart_dir, "alerts", "switchboard-rules.yaml").read_text())
        want = [r["alert"] for g in source["groups"] for r in g["rules"]]
        [rule] = find(docs, "PrometheusRule")
        rules = [r for g in rule["spec"]["groups"] for r in g["rules"]]
        check([r["alert"] for r in rules] == want, f"{label}: the PrometheusRule has the rule file's alerts {want}")
        slots = values.get("cluster", {}).get("slots", 64)
        [unserved] = [r for r in rules if r["alert"] == "SwitchboardSlotsUnserved"]
        check(f"< {slots}" in unserved["expr"] and "< 64" not in unserved["expr"].replace(f"< {slots}", ""),
              f"{label}: SwitchboardSlotsUnserved compares with cluster.slots {slots}: {unserved['expr']!r}")
        base = values["alerts"].get("runbookBaseUrl", "https://example.invalid/switchboard/blob/main/docs/operations.md")
        for r in rules:
            check(r["annotations"]["runbook_url"].startswith(base + "#"), f"{label}: {r['alert']} runbook under {base}")
    if values.get("dashboards", {}).get("enabled"):
        want = sorted(p.name for p in Path(chart_dir, "dashboards").glob("*.json"))
        maps = [d for d in find(docs, "ConfigMap") if "-dashboard-" in d["metadata"]["name"]]
        got = sorted(k for m in maps for k in m["data"])
        check(got == want, f"{label}: one dashboard ConfigMap per dashboards/*.json: {got} vs {want}")
        for m in maps:
            check(m["metadata"]["labels"].get("grafana_dashboard") == "1", f"{label}: {m['metadata']['name']} has grafana_dashboard")
            for name, text in m["data"].items():
                check(json.loads(text).get("title") == json.loads(Path(chart_dir, "dashboards", name).read_text())["title"],
                      f"{label}: {name} is the committed dashboard")


def pod_labels(workload) -> dict:
    return workload["spec"]["template"]["metadata"]["labels"]


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def check_security(docs, label):
    for w in find(docs, "Deployment") + find(docs, "DaemonSet"):
        name = f'{w["kind"]}/{w["metadata"]["name"]}'
        pod = w["spec"]["template"]["spec"]
        psc = pod.get("securityContext", {})
        check(psc.get("runAsNonRoot") is True and psc.get("runAsUser", 0) != 0, f"{label}: {name} runs as non-root")
        check(pod.get("automountServiceAccountToken") is False, f"{label}: {name} mounts no API token")
        for c in pod.get("initContainers", []) + pod["containers"]:
            sc = c.get("securityContext", {})
            cname = f"{name} container {c['name']}"
            check(sc.get("readOnlyRootFilesystem") is True, f"{label}: {cname} has a read-only root")
            check(sc.get("allowPrivilegeEscalation") is False, f"{label}: {cname} cannot escalate")
            check(sc.get("capabilities", {}).get("drop") == ["ALL"] and not sc.get("capabilities", {}).get("add"),
                  f"{label}: {cname} drops ALL capabilities")
            seccomp = sc.get("seccompProfile") or psc.get("seccompProfile") or {}
            check(seccomp.get("type") == "RuntimeDefault", f"{label}: {cname} seccomp RuntimeDefault")
            check(sc.get("runAsUser", psc.get("runAsUser", 0)) != 0, f"{label}: {cname} non-root user")
            if w["kind"] == "Deployment":
                check(psc.get("runAsUser") == 65532, f"{label}: {cname} runs as 65532")
                check("resources" in c and c["resources"].get("requests"), f"{label}: {cname} has resource requests")


def check_probes_and_grace(docs, label, help_defaults):
    for component in ("edge", "router"):
        [dep] = find(docs, "Deployment", f"-{component}")
        pod = dep["spec"]["template"]["spec"]
        [c] = [c for c in pod["containers"] if c["name"] == component]
        env = env_of(c)
        admin_port = int(env["SWITCHBOARD_ADMIN_LISTEN"]["value"].rsplit(":", 1)[1])
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = c[probe]["httpGet"]
            port = ports.get(get["port"], get["port"])
            check(get["path"] == path, f"{label}: {component} {probe} asks {get['path']} (served: {path})")
            check(port == admin_port,
                  f"{label}: {component} {probe} port {get['port']} is the admin port of SWITCHBOARD_ADMIN_LISTEN ({admin_port})")
        if component == "edge":
            listen = int(env["SWITCHBOARD_LISTEN"]["value"].rsplit(":", 1)[1])
            check(ports.get("public") == listen, f"{label}: edge port 'public' is SWITCHBOARD_LISTEN's ({listen})")
        grace = seconds(env["SWITCHBOARD_SHUTDOWN_GRACE"]["value"])
        pre = ((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep", {}).get("seconds", 0)
        tgps = pod["terminationGracePeriodSeconds"]
        check(tgps > pre + grace,
              f"{label}: {component} terminationGracePeriodSeconds {tgps} > preStop {pre}s + shutdown grace {grace}s")
        strategy = dep["spec"]["strategy"]["rollingUpdate"]
        check(strategy["maxUnavailable"] == 0, f"{label}: {component} rolling update keeps every pod until its successor is up")


def check_selectors(docs, label):
    workloads = find(docs, "Deployment") + find(docs, "DaemonSet")
    for w in workloads:
        check(selects(w["spec"]["selector"]["matchLabels"], pod_labels(w)),
              f"{label}: {w['metadata']['name']} selector matches its pods")
    for pdb in find(docs, "PodDisruptionBudget"):
        sel = pdb["spec"]["selector"]["matchLabels"]
        matched = [w["metadata"]["name"] for w in workloads if selects(sel, pod_labels(w))]
        check(matched == [pdb["metadata"]["name"]],
              f"{label}: PDB {pdb['metadata']['name']} selects exactly its Deployment's pods (selects {matched})")
        check(pdb["spec"].get("maxUnavailable") == 1, f"{label}: PDB {pdb['metadata']['name']} maxUnavailable 1")
    for svc in find(docs, "Service"):
        sel = svc["spec"]["selector"]
        matched = [w for w in workloads if selects(sel, pod_labels(w))]
        check(len(matched) == 1, f"{label}: Service {svc['metadata']['name']} selects one workload's pods")
        for w in matched:
            names = {p["name"] for c in w["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
            for p in svc["spec"]["ports"]:
                check(p["targetPort"] in names, f"{label}: Service {svc['metadata']['name']} port {p['name']} targets a named container port")
    for np in find(docs, "NetworkPolicy"):
        sel = np["spec"]["podSelector"]["matchLabels"]
        if np["metadata"]["name"].endswith(("-edge", "-router")):
            check(any(selects(sel, pod_labels(w)) for w in workloads), f"{label}: NetworkPolicy {np['metadata']['name']} selects pods")


def volume_for_mount(pod, container, path_dir):
    for m in container.get("volumeMounts", []):
        if m["mountPath"].rstrip("/") == path_dir:
            for v in pod["volumes"]:
                if v["name"] == m["name"]:
                    return v, m
    return None, None


def check_turn(docs, label):
    [edge] = find(docs, "Deployment", "-edge")
    epod = edge["spec"]["template"]["spec"]
    [ec] = [c for c in epod["containers"] if c["name"] == "edge"]
    env = env_of(ec)
    ds = find(docs, "DaemonSet", "-coturn")
    if "SWITCHBOARD_TURN_SECRET_FILE" not in env:
        check(not ds, f"{label}: no coturn without the edges' TURN secret")
        return
    secret_file = env["SWITCHBOARD_TURN_SECRET_FILE"]["value"]
    vol, _ = volume_for_mount(epod, ec, os.path.dirname(secret_file))
    check(vol is not None and "secret" in vol, f"{label}: edge mounts --turn-secret-file from a Secret")
    edge_secret = (vol["secret"]["secretName"], [i["key"] for i in vol["secret"]["items"] if i["path"] == os.path.basename(secret_file)])
    check(len(edge_secret[1]) == 1, f"{label}: the edge's TURN secret file is one key of the Secret")
    check("SWITCHBOARD_TURN_URLS" in env and env["SWITCHBOARD_TURN_URLS"]["value"], f"{label}: edges get --turn-url")
    if not ds:
        return
    [ds] = ds
    pod = ds["spec"]["template"]["spec"]
    check(pod.get("hostNetwork") is True, f"{label}: coturn uses hostNetwork")
    check(bool(pod.get("nodeSelector")), f"{label}: coturn runs on labelled nodes only")
    [init] = pod["initContainers"]
    script = init["command"][-1].replace("$$", "$")  # as the kubelet expands it
    m = re.search(r"done < (\S+)", script)
    check(m is not None, f"{label}: coturn's init step reads a secret file")
    svol, _ = volume_for_mount(pod, init, os.path.dirname(m.group(1)))
    check(svol is not None and "secret" in svol, f"{label}: coturn's secret file is a Secret volume")
    items = [i["key"] for i in svol["secret"]["items"] if i["path"] == os.path.basename(m.group(1))]
    check((svol["secret"]["secretName"], items) == edge_secret,
          f"{label}: coturn's static-auth-secret comes from the edges' TURN Secret and key {edge_secret}, got {(svol['secret']['secretName'], items)}")
    [cm] = find(docs, "ConfigMap", "-coturn")
    conf = cm["data"]["turnserver.conf"]
    check("use-auth-secret" in conf.splitlines(), f"{label}: coturn use-auth-secret")
    check("static-auth-secret" not in conf, f"{label}: no secret in the ConfigMap")
    check_denied(conf, label)
    run_init_script(script, m.group(1), label)


def check_denied(conf, label):
    ranges = []
    for line in conf.splitlines():
        if line.startswith("denied-peer-ip="):
            lo, _, hi = line.split("=", 1)[1].partition("-")
            ranges.append((ipaddress.ip_address(lo), ipaddress.ip_address(hi or lo)))
    for net in MUST_DENY:
        n = ipaddress.ip_network(net)
        covered = any(lo.version == n.version and lo <= n[0] and n[-1] <= hi for lo, hi in ranges)
        check(covered, f"{label}: coturn denies relays to {net}")


def run_init_script(script, secret_path, label):
    """Runs coturn's init step with a sample secret file, as the edge reads it (comments, blanks, spaces)."""
    with tempfile.TemporaryDirectory() as tmp:
        base, run, sec = (Path(tmp) / d for d in ("base", "run", "secret"))
        for d in (base, run, sec):
            d.mkdir()
        (base / "turnserver.conf").write_text("use-auth-secret\n")
        (sec / os.path.basename(secret_path)).write_text("# rotated 2026-11\n  new-secret  \n\n   # indented comment\nold-secret")
        local = (script.replace("/etc/coturn/base", str(base)).replace("/run/coturn", str(run))
                 .replace(os.path.dirname(secret_path), str(sec)))
        subprocess.run(["/bin/sh", "-c", local], check=True)
        lines = (run / "turnserver.conf").read_text().splitlines()
        check(lines == ["use-auth-secret", "static-auth-secret=new-secret", "static-auth-secret=old-secret"],
              f"{label}: coturn's init step writes one static-auth-secret per secret line, in order (got {lines})")


def check_edge_front(docs, label):
    for ing in find(docs, "Ingress"):
        ann = ing["metadata"].get("annotations", {})
        for k in ("nginx.ingress.kubernetes.io/proxy-read-timeout", "nginx.ingress.kubernetes.io/proxy-send-timeout"):
            check(int(ann.get(k, "0")) >= 3600, f"{label}: Ingress {k} >= 3600 s for WebSockets")
    for hr in find(docs, "HTTPRoute"):
        for rule in hr["spec"]["rules"]:
            t = rule.get("timeouts", {})
            check(t.get("request") == "0s" or seconds(t.get("request", "0s")) >= 3600,
                  f"{label}: HTTPRoute request timeout disabled or long")
    for hpa in find(docs, "HorizontalPodAutoscaler"):
        check(hpa["spec"]["scaleTargetRef"]["name"].endswith("-edge"), f"{label}: HPA scales the edges")
        check(any(m["type"] == "Resource" for m in hpa["spec"]["metrics"]), f"{label}: HPA on CPU")


def secret_content(docs, name, key, root):
    """A Secret's value as rendered by the chart, or a stand-in for an existing Secret."""
    import base64
    for sec in find(docs, "Secret"):
        if sec["metadata"]["name"] == name and key in sec.get("data", {}):
            return base64.b64decode(sec["data"][key]).decode()
    if key.endswith(".toml"):
        return (root / "docs" / "examples" / "tenants.toml").read_text()
    if key.endswith((".crt", ".pem")):  # a real certificate: the binaries read CA files at start
        return subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-subj", "/CN=chart-checks", "-days", "1", "-keyout", "/dev/null"],
            check=True, capture_output=True, text=True).stdout
    return "stand-in-secret-0123456789abcdef\n"


def start_binaries(docs, label, bins, root, tmp):
    """Starts edge and router with the rendered environment (secrets and mounted files filled in,
    listening on free loopback ports): the binaries check their whole configuration before anything
    else and exit 64 on a bad one. Returns the processes, to be judged by judge_binaries."""
    procs = []
    for component, binary in bins.items():
        [dep] = find(docs, "Deployment", f"-{component}")
        pod = dep["spec"]["template"]["spec"]
        [c] = [c for c in pod["containers"] if c["name"] == component]
        files = {}
        for m in c.get("volumeMounts", []):
            [vol] = [v for v in pod["volumes"] if v["name"] == m["name"]]
            for item in vol["secret"].get("items", []):
                files[f'{m["mountPath"]}/{item["path"]}'] = secret_content(docs, vol["secret"]["secretName"], item["key"], root)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        for name, e in env_of(c).items():
            if "value" in e:
                # Kubernetes expands $(VAR) from the variables defined before it; one left is a bug.
                value = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), e["value"])
                check("$(" not in value, f"{label}: {component} {name}={e['value']!r} refers to a variable defined after it, or to none")
                if name.endswith("LISTEN"):
                    value = "127.0.0.1:0"
                elif all(v in files for v in value.split(",")):
                    paths = []
                    for v in value.split(","):
                        path = Path(tmp) / f"{label}-{component}-{os.path.basename(v)}"
                        path.write_text(files[v])
                        paths.append(str(path))
                    value = ",".join(paths)
            elif "secretKeyRef" in e.get("valueFrom", {}):
                ref = e["valueFrom"]["secretKeyRef"]
                value = secret_content(docs, ref["name"], ref["key"], root).strip()
            elif "fieldRef" in e.get("valueFrom", {}):
                path = e["valueFrom"]["fieldRef"]["fieldPath"]
                # The pod's and node's IPs: loopback here (a Consul agent double is not needed: the
                # binaries register in the background and only their configuration is judged).
                value = "127.0.0.1" if path in ("status.podIP", "status.hostIP") else f"{component}-pod-0"
            env[name] = value
        procs.append((f"{label}: switchboard-{component}", subprocess.Popen(
            [binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)))
    return procs


def judge_binaries(procs):
    import time
    time.sleep(1.5)
    for what, p in procs:
        code = p.poll()
        if code is None:
            p.kill()
        _, err = p.communicate()
        check(code != 64, f"{what} accepts the rendered configuration (exit 64: {err.strip().splitlines()[-1:] if err else ''})")
        # Still running (waiting for NATS) is the expected state; any other exit is worth a look.
        # (A stand-in credentials file cannot hold a real JWT: a router gives up on it at connect.)
        check(code is None or code == 64 or "credentials file" in (err or ""), f"{what} was still running after its configuration check (exit {code}: {err.strip().splitlines()[-1:] if err else ''})")


def check_defaults(docs, help_defaults, binary):
    """The values.yaml defaults are the binaries' defaults, unless listed in NOT_DEFAULT."""
    [dep] = find(docs, "Deployment", f"-{binary}")
    [c] = [c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == binary]
    norm = lambda s: re.split(r"[ ,]+", s.strip())
    for name, e in env_of(c).items():
        if "value" not in e or name not in help_defaults or name in NOT_DEFAULT:
            continue
        check(norm(e["value"]) == norm(help_defaults[name]),
              f"defaults: {binary} {name}={e['value']!r} but the binary's default is {help_defaults[name]!r}")


def main() -> int:
    chart_dir, edge_bin, router_bin = sys.argv[1:4]
    chart_dir = os.path.abspath(chart_dir)
    root = Path(chart_dir).parent.parent
    chart = helm.Chart.load(chart_dir)

    say(f"helm SDK {helm.helm_sdk_version()}, kubernetes-validate {kubernetes_validate.__version__ if hasattr(kubernetes_validate, '__version__') else ''} (schemas of Kubernetes {KUBE_VERSION}, strict)")
    workspace = tomllib.loads((root / "Cargo.toml").read_text())["workspace"]["package"]["version"]
    check(chart.metadata["appVersion"] == workspace, f"Chart.yaml appVersion {chart.metadata['appVersion']} is the workspace version {workspace}")
    deps = {d["name"]: d for d in chart.metadata.get("dependencies", [])}
    check(deps.get("nats", {}).get("condition") == "nats.enabled", "the nats dependency has condition nats.enabled")
    check(not (Path(chart_dir) / "charts").exists(), "no vendored dependency under charts/switchboard/charts")
    say("ok   Chart.yaml: appVersion, nats dependency (not vendored)")

    # docs/kubernetes.md's values table names every top-level key of values.yaml.
    doc = (root / "docs" / "kubernetes.md").read_text()
    top = list(yaml.safe_load(Path(chart_dir, "values.yaml").read_text()))
    undocumented = [k for k in top if not re.search(rf"^\|[^|\n]*`{re.escape(k)}`", doc, re.M)]
    check(not undocumented, f"docs/kubernetes.md's values table lacks top-level keys {undocumented}")
    say(f"ok   docs/kubernetes.md documents all {len(top)} top-level keys of values.yaml")

    # helm lint --strict, on the chart as users get it. The one finding allowed: the NATS chart is
    # not downloaded (no network here); `helm dependency build` fetches it (docs/kubernetes.md).
    allowed = "chart directory is missing these dependencies: nats"
    value_sets = sorted(Path(chart_dir, "ci").glob("*-values.yaml"))
    n_before = len(failures)
    for vs in [None] + value_sets:
        values = yaml.safe_load(vs.read_text()) if vs else None
        report = helm.lint(chart_dir, values, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}")
        bad = [m for m in report["messages"] if m["severity"] >= 2 and m["error"] != allowed]
        bad += [e for e in report["errors"] if e != allowed]
        check(not bad, f"helm lint --strict {vs.name if vs else 'default values'}: {bad}")
    say(f"{'ok  ' if len(failures) == n_before else 'FAIL'} helm lint --strict: default values and {len(value_sets)} value sets (allowed: {allowed!r})")

    edge_envs, edge_defaults = help_flags(edge_bin)
    router_envs, router_defaults = help_flags(router_bin)
    seen = {"edge": set(), "router": set()}
    procs = []
    tmp = tempfile.mkdtemp(prefix="chart-checks-")
    for vs in value_sets:
        label = vs.name
        values = yaml.safe_load(vs.read_text())
        check(values.get("nats", {}).get("enabled") is False, f"{label}: renders with nats.enabled=false")
        n_before = len(failures)
        try:
            docs = render(chart, values)
        except helm.HelmError as e:
            check(False, f"{label}: does not render: {e}")
            continue
        crds = validate_k8s(docs, label)
        check_security(docs, label)
        check_probes_and_grace(docs, label, None)
        check_selectors(docs, label)
        check_turn(docs, label)
        check_edge_front(docs, label)
        check_monitoring(docs, values, label, chart_dir)
        for component in ("edge", "router"):
            [dep] = find(docs, "Deployment", f"-{component}")
            for c in dep["spec"]["template"]["spec"]["containers"]:
                if c["name"] == component:
                    seen[component] |= set(env_of(c))
        procs += start_binaries(docs, label, {"edge": edge_bin, "router": router_bin}, root, tmp)
        if label == "minimal-values.yaml":
            check_defaults(docs, edge_defaults, "edge")
            check_defaults(docs, router_defaults, "router")
        kinds = sorted({d["kind"] for d in docs})
        status = "ok  " if len(failures) == n_before else "FAIL"
        say(f"{status} {label}: {len(docs)} objects valid ({', '.join(kinds)}); CRDs checked structurally: {sorted(crds) or 'none'}")
    say("     per value set: non-root, read-only root, no capabilities, seccomp; probes /readyz and /healthz on the admin port of "
        "SWITCHBOARD_ADMIN_LISTEN; terminationGracePeriodSeconds > preStop + shutdown grace; PDB, Service and workload selectors; "
        "coturn's static-auth-secret from the edges' TURN Secret and key, its init step run on a sample file, denied peer networks; "
        "Ingress/HTTPRoute WebSocket timeouts; the PrometheusRule = the alert rule file (slots, runbooks) and a "
        "ConfigMap per dashboard; minimal set: values.yaml defaults = the binaries' defaults")

    n_before = len(failures)
    judge_binaries(procs)
    shutil.rmtree(tmp, ignore_errors=True)
    say(f"{'ok  ' if len(failures) == n_before else 'FAIL'} both binaries accept the environment rendered by every value set "
        f"({len(procs)} processes started, none exited 64)")

    for component, envs in (("edge", edge_envs), ("router", router_envs)):
        missing = sorted(envs - seen[component] - set(NOT_EXPOSED[component]))
        check(not missing, f"flags of switchboard-{component} reachable from no value: {missing} "
              f"(add them to the chart, or to NOT_EXPOSED in scripts/chart_checks.py with a reason)")
        stale = sorted(set(NOT_EXPOSED[component]) - envs)
        check(not stale, f"NOT_EXPOSED lists {stale}, which switchboard-{component} no longer has")
        leaked = sorted(set(NOT_EXPOSED[component]) & seen[component])
        check(not leaked, f"NOT_EXPOSED lists {leaked}, yet the chart sets them for {component}")
        unknown = sorted(v for v in seen[component] - envs if v.startswith(("SWITCHBOARD_", "OTEL_")))
        check(not unknown, f"the chart sets {unknown}, which switchboard-{component} does not know")
        say(f"ok   switchboard-{component}: {len(envs)} flags in --help, {len(envs & seen[component])} set by the chart, "
            f"not exposed: {', '.join(sorted(NOT_EXPOSED[component]))}" if not missing else
            f"FAIL switchboard-{component}: not covered: {missing}")

    # Wrong values are refused before rendering, with a message naming the field.
    for bad in sorted(Path(chart_dir, "ci", "invalid").glob("*.yaml")):
        text = bad.read_text()
        expect = re.search(r"^# expect: (.+)$", text, re.M).group(1).strip()
        try:
            chart.validate_schema(yaml.safe_load(text))
            check(False, f"invalid/{bad.name}: accepted by values.schema.json")
        except helm.HelmValuesError as e:
            check(expect in str(e), f"invalid/{bad.name}: the error names {expect!r}: {e}")
    say(f"ok   values.schema.json refuses {len(list(Path(chart_dir, 'ci', 'invalid').glob('*.yaml')))} wrong value files, naming the field")

    # Combinations the binaries would refuse at start (exit 64) fail at render time instead.
    base = {"nats": {"enabled": False}, "natsClient": {"urls": ["nats://n:4222"]}}
    refusals = [
        ({"nats": {"enabled": False}}, "natsClient.urls"),
        ({**base, "hosted": {"enabled": True}, "edge": {"allowedOrigins": ["https://a.example"]}}, "edge.allowedOrigins"),
        ({**base, "natsClient": {"urls": ["nats://n:4222"], "user": "u", "token": {"value": "t"}}}, "natsClient.token"),
        ({**base, "coturn": {"enabled": True}}, "coturn.enabled needs turn.enabled"),
        ({"nats": {"enabled": False}, "consul": {"natsService": "nats"}}, "consul.natsService needs consul.enabled"),
    ]
    for values, expect in refusals:
        try:
            render(chart, values)
            check(False, f"render refuses {values}")
        except (helm.HelmRenderError, helm.HelmValuesError) as e:
            check(expect in str(e), f"render refusal names {expect!r}: {e}")
    say(f"ok   {len(refusals)} combinations the binaries refuse are refused at render time, naming the value")

    # With nats.enabled (the default) the edges find the bundled chart's Service.
    docs = chart.render({}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    text = docs.get("switchboard/templates/edge/deployment.yaml", "")
    check(f'"nats://{RELEASE}-nats.{NAMESPACE}.svc:4222"' in text, "default values: edges connect to the bundled NATS Service")
    say("ok   default values: SWITCHBOARD_NATS is the bundled NATS chart's Service")

    if failures:
        print(f"\nchart checks: {len(failures)} failed:", file=sys.stderr)
        for f in failures:
            print(f"  - {f}", file=sys.stderr)
        return 1
    say("chart checks: all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
