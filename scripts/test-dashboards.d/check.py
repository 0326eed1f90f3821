"""Evaluates every dashboard query and every alert rule against a Prometheus scraping a live
Switchboard cluster under load (scripts/test-dashboards starts them). Standard library only.

Fails when a panel query returns no series with a number (a panel that would show "No data"), when an
alert's expression without its threshold returns nothing or reads a series that does not exist, when
a rule does not evaluate cleanly in Prometheus, or when any alert is pending or firing.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

# What Grafana would put in place of its variables: every job and instance ("All" is `.+` in the
# dashboards), a rate window of several 1 s scrapes, and a range covering the whole test.
SUBSTITUTIONS = {
    "$__rate_interval": "10s",
    "$__interval": "2s",
    "$__range": "5m",
    "$job": ".+",
    "$instance": ".+",
}
# A comparison with a number: the thresholds of an alert expression, removed to see its series.
THRESHOLD = re.compile(r"\s*(==|!=|>=|<=|>|<)\s*-?[0-9][0-9.eE+]*(?![\w\]])")
SELECTOR = re.compile(r"\b(switchboard_[a-z_]+|process_[a-z_]+|up)\b(\{[^}]*\})?")


def substitute(expr: str) -> str:
    for var, value in SUBSTITUTIONS.items():
        expr = expr.replace(var, value)
    return expr


class Prometheus:
    def __init__(self, url: str):
        self.url = url.rstrip("/")

    def get(self, path: str, **params) -> dict:
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as e:
            body = json.load(e)
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.get("/api/v1/query", **params)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def scalar(self, expr: str) -> float:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else 0.0


def finite(series: list[dict]) -> list[dict]:
    return [s for s in series if math.isfinite(float(s["value"][1]))]


def wait_for_data(prom: Prometheus, expect_targets: int, timeout: float) -> None:
    """Until every target is up, joins and relays flow on both edges and for both tenants, and the
    rate windows are full of load."""
    conditions = {
        "every target up": f"count(up == 1) >= {expect_targets}",
        "joins on both edges": "count(rate(switchboard_joins_total[10s]) > 0) >= 2",
        "relays on both edges": 'count(rate(switchboard_messages_total{event="send_to_peer", direction="in"}[10s]) > 0) >= 2',
        "connections of both tenants": "count(sum by (tenant) (switchboard_tenant_connections) > 0) >= 2",
        "all slots served": "sum(switchboard_router_slots_owned - switchboard_router_slots_paused) >= 64",
    }
    started = time.monotonic()
    deadline = started + timeout
    met = {}
    while True:
        for name, expr in conditions.items():
            if name not in met and prom.query(expr):
                met[name] = time.monotonic() - started
        missing = [name for name in conditions if name not in met]
        if not missing:
            print("check.py: " + ", ".join(f"{name} after {s:.1f} s" for name, s in met.items()), file=sys.stderr)
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"check.py: no data after {timeout:.0f} s: {', '.join(missing)}")
        time.sleep(0.5)
    # The rate windows ($__rate_interval = 10s) should hold load only.
    time.sleep(10)


def check_dashboards(prom: Prometheus, directory: pathlib.Path, at: float) -> tuple[list[str], list[str]]:
    rows, failures = [], []
    for path in sorted(directory.glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            if panel.get("type") == "row":
                continue
            if not panel.get("description"):
                failures.append(f"{path.name}: panel {panel['title']!r} has no description")
            if not panel.get("fieldConfig", {}).get("defaults", {}).get("unit"):
                failures.append(f"{path.name}: panel {panel['title']!r} has no unit")
            for target in panel.get("targets", []):
                expr = substitute(target["expr"])
                try:
                    result = prom.query(expr, at)
                except RuntimeError as e:
                    failures.append(f"{path.name}: {panel['title']!r} {target.get('refId')}: {e}")
                    result = []
                numbers = finite(result)
                ok = bool(numbers)
                sample = f"{float(numbers[0]['value'][1]):.4g}" if numbers else "-"
                rows.append(f"{'ok ' if ok else 'NO '} {path.stem:<9} {panel['title'][:44]:<44} "
                            f"{target.get('refId', ''):<2} {len(numbers):>3}/{len(result):<3} {sample}")
                if not ok:
                    failures.append(f"{path.name}: {panel['title']!r} {target.get('refId')}: no data: {expr}")
    return rows, failures


def anchors(markdown: pathlib.Path) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown file."""
    slugs = set()
    for line in markdown.read_text().splitlines():
        if match := re.match(r"#{1,6}\s+(.*)", line):
            slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            slugs.add(slug.replace(" ", "-"))
    return slugs


def check_rules(prom: Prometheus, rules_file: pathlib.Path, docs: pathlib.Path,
                at: float) -> tuple[list[str], list[str]]:
    rows, failures = [], []
    documented = anchors(docs)
    expected = re.findall(r"^\s*- alert:\s*(\S+)", rules_file.read_text(), re.M)
    groups = prom.get("/api/v1/rules", type="alert")["groups"]
    loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
    for name in expected:
        rule = loaded.get(name)
        if rule is None:
            failures.append(f"{name}: not loaded by Prometheus")
            continue
        base, stripped = THRESHOLD.subn("", rule["query"].strip())
        result = prom.query(base, at)
        selectors = sorted({m.group(0) for m in SELECTOR.finditer(rule["query"])})
        absent = [s for s in selectors if not prom.query(f"count({s})", at)]
        problems = []
        if rule["health"] != "ok":
            problems.append(f"health {rule['health']}: {rule.get('lastError')}")
        if rule["state"] != "inactive":
            problems.append(f"state {rule['state']} on a healthy cluster")
        if not stripped:
            problems.append("no threshold to remove")
        runbook = rule["annotations"].get("runbook_url", "")
        if not runbook.startswith(f"https://example.invalid/switchboard/blob/main/docs/{docs.name}#") or \
                runbook.split("#", 1)[1] not in documented:
            problems.append(f"runbook_url {runbook!r} is no section of docs/{docs.name}")
        for key in ("summary", "description"):
            if not rule["annotations"].get(key):
                problems.append(f"no {key} annotation")
        if rule["labels"].get("severity") not in ("critical", "warning"):
            problems.append("no severity label (critical or warning)")
        if not rule.get("duration"):
            problems.append("no for:")
        if not result:
            problems.append(f"no series without the threshold: {base}")
        if absent:
            problems.append(f"reads series that do not exist: {', '.join(absent)}")
        sample = f"{float(result[0]['value'][1]):.4g}" if result else "-"
        rows.append(f"{'ok ' if not problems else 'NO '} {name:<36} {rule['state']:<9} {len(result):>3} "
                    f"{sample:<9} {stripped} threshold(s) removed, {len(selectors)} selector(s) present")
        failures += [f"{name}: {p}" for p in problems]
    firing = prom.get("/api/v1/alerts")["alerts"]
    for alert in firing:
        failures.append(f"alert {alert['labels'].get('alertname')} is {alert['state']}: {alert['labels']}")
    return rows, failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", required=True)
    parser.add_argument("--dashboards", required=True, type=pathlib.Path)
    parser.add_argument("--rules", required=True, type=pathlib.Path)
    parser.add_argument("--docs", required=True, type=pathlib.Path, help="docs/operations.md: the runbooks")
    parser.add_argument("--expect-targets", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=45)
    args = parser.parse_args()
    prom = Prometheus(args.prometheus)

    started = time.monotonic()
    wait_for_data(prom, args.expect_targets, args.timeout)
    at = time.time()
    print(f"check.py: data after {time.monotonic() - started:.0f} s; evaluating at one instant "
          f"({', '.join(f'{k}={v}' for k, v in SUBSTITUTIONS.items())})", file=sys.stderr)

    rows, failures = check_dashboards(prom, args.dashboards, at)
    print("\n    dashboard panel                                        q  finite/series  value")
    print("\n".join(rows))
    rule_rows, rule_failures = check_rules(prom, args.rules, args.docs, at)
    print("\n    alert                                state     series value     (expression without its threshold)")
    print("\n".join(rule_rows))
    failures += rule_failures
    panels = len({r[4:58] for r in rows})
    print(f"\n{len(rows)} queries of {panels} panels, {len(rule_rows)} alert rules checked; "
          f"{len(failures)} failure(s)")
    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
