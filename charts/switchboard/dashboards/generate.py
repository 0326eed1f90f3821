"""Generates Switchboard's Grafana dashboards (the *.json beside this file) with the Grafana
Foundation SDK pinned in scripts/grafana-sdk.txt.

    "$(scripts/grafana-sdk)" charts/switchboard/dashboards/generate.py           # write the JSON
    "$(scripts/grafana-sdk)" charts/switchboard/dashboards/generate.py --check   # compare, exit 1 if stale

Edit this file, never the JSON: scripts/test-dashboards fails when the committed JSON differs from a
fresh generation, and evaluates every query below against a real cluster under load (each must return
data). Metric names and labels are those of docs/operations.md, "Metrics".

Every dashboard has a `datasource` variable (any Prometheus), and `job` and `instance` variables read
from `switchboard_build_info`, so one Grafana serves several deployments.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus as pb
from grafana_foundation_sdk.builders import stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

HERE = pathlib.Path(__file__).resolve().parent
DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
# The selector every query carries: the deployment(s) and process(es) chosen above the dashboard.
S = 'job=~"$job", instance=~"$instance"'
RATE = "$__rate_interval"


def q(expr: str, legend: str = "") -> pb.Dataquery:
    query = pb.Dataquery().expr(expr).datasource(DS).range()
    return query.legend_format(legend or "__auto")


def ts(title: str, description: str, unit: str, *queries: pb.Dataquery, w: int = 12, h: int = 8,
       stack: bool = False, maximum: float | None = None) -> timeseries.Panel:
    panel = (timeseries.Panel().title(title).description(description).unit(unit).datasource(DS)
             .span(w).height(h).fill_opacity(10).min(0)
             .legend(cb.VizLegendOptions().show_legend(True).display_mode(cm.LegendDisplayMode.TABLE)
                     .placement(cm.LegendPlacement.BOTTOM).calcs(["lastNotNull", "max"])))
    if stack:
        panel = panel.stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL))
    if maximum is not None:
        panel = panel.max(maximum)
    for ref, query in zip("ABCDEFGH", queries):
        panel = panel.with_target(query.ref_id(ref))
    return panel


def st(title: str, description: str, unit: str, query: pb.Dataquery, w: int = 4) -> stat.Panel:
    return (stat.Panel().title(title).description(description).unit(unit).datasource(DS)
            .span(w).height(4).graph_mode(cm.BigValueGraphMode.AREA)
            .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]))
            .with_target(query.ref_id("A")))


def quantiles(metric: str, by: str = "", extra: str = "", qs=(0.5, 0.9, 0.99)) -> list[pb.Dataquery]:
    """histogram_quantile queries of a histogram, per `by` labels (besides le)."""
    labels = ", ".join(["le"] + ([by] if by else []))
    sel = f"{extra}, {S}" if extra else S
    return [
        q(f"histogram_quantile({p}, sum by ({labels}) (rate({metric}_bucket{{{sel}}}[{RATE}])))",
          f"p{int(p * 100)}" + (f" {{{{{by}}}}}" if by else ""))
        for p in qs
    ]


ALL = dm.VariableOption(selected=True, text="All", value="$__all")


def base(uid: str, title: str, description: str) -> db.Dashboard:
    datasource = (db.DatasourceVariable("datasource").label("Data source").type("prometheus"))
    job = (db.QueryVariable("job").label("Job").datasource(DS)
           .query("label_values(switchboard_build_info, job)")
           .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
           .multi(True).include_all(True).all_value(".+").sort(dm.VariableSort.ALPHABETICAL_ASC)
           .current(ALL))
    instance = (db.QueryVariable("instance").label("Instance").datasource(DS)
                .query('label_values(switchboard_build_info{job=~"$job"}, instance)')
                .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
                .multi(True).include_all(True).all_value(".+").sort(dm.VariableSort.ALPHABETICAL_ASC)
           .current(ALL))
    return (db.Dashboard(title).uid(uid).description(description)
            .tags(["switchboard"]).editable().timezone("browser").time("now-1h", "now").refresh("30s")
            .tooltip(dm.DashboardCursorSync.CROSSHAIR)
            .with_variable(datasource).with_variable(job).with_variable(instance)
            .link(db.DashboardLink("Switchboard").type(dm.DashboardLinkType.DASHBOARDS)
                  .tags(["switchboard"]).as_dropdown(True).include_vars(True).keep_time(True)))


# Only edges export switchboard_bus_connected and routers switchboard_router_slots_owned: a join on
# them keeps the process metrics of one kind.
EDGES = f"on (job, instance) group_left() max by (job, instance) (switchboard_build_info{{binary=\"edge\", {S}}})"
ROUTERS = f"on (job, instance) group_left() max by (job, instance) (switchboard_build_info{{binary=\"router\", {S}}})"
IS_EDGE = f"on (job, instance) switchboard_build_info{{binary=\"edge\", {S}}}"
IS_ROUTER = f"on (job, instance) switchboard_build_info{{binary=\"router\", {S}}}"


def overview() -> db.Dashboard:
    d = base("switchboard-overview", "Switchboard / Cluster overview",
             "Clients, rooms, joins, relays, errors, latency and usage per tenant of a Switchboard deployment.")
    d = (d.with_row(db.Row("At a glance"))
         .with_panel(st("Connections", "Open client connections over all edges (switchboard_connections).",
                        "short", q(f"sum(switchboard_connections{{{S}}})", "connections")))
         .with_panel(st("Rooms", "Open rooms: the sum over the routers (each counts the rooms of the slots it serves), "
                        "or over standalone edges (switchboard_rooms).",
                        "short", q(f"sum(switchboard_rooms{{{S}}})", "rooms")))
         .with_panel(st("Members", "Connections in rooms (switchboard_room_members summed over routers or standalone edges).",
                        "short", q(f"sum(switchboard_room_members{{{S}}})", "members")))
         .with_panel(st("Joins/s", "Successful joins per second over all edges (switchboard_joins_total).",
                        "reqps", q(f"sum(rate(switchboard_joins_total{{{S}}}[{RATE}]))", "joins/s")))
         .with_panel(st("Relays/s", "Peer messages (send_to_peer) received per second over all edges.",
                        "reqps", q(f'sum(rate(switchboard_messages_total{{event="send_to_peer", direction="in", {S}}}[{RATE}]))', "relays/s")))
         .with_panel(st("Processes up", "Scrape targets answering, by job: every edge and router should count (Prometheus's up).",
                        "short", q(f"sum by (job) (up{{{S}}})", "{{job}}")))
         .with_row(db.Row("Traffic"))
         .with_panel(ts("Connections by edge", "Open client connections of each edge (switchboard_connections).",
                        "short", q(f"sum by (instance) (switchboard_connections{{{S}}})", "{{instance}}"), stack=True))
         .with_panel(ts("Joins and relays per second", "Successful joins, and send_to_peer messages received, per second over all edges.",
                        "reqps", q(f"sum(rate(switchboard_joins_total{{{S}}}[{RATE}]))", "joins"),
                        q(f'sum(rate(switchboard_messages_total{{event="send_to_peer", direction="in", {S}}}[{RATE}]))', "relays")))
         .with_panel(ts("Errors sent to clients, by reason", "Protocol errors answered to clients per second (switchboard_errors_total), by reason. "
                        "rate_limited and unknown_peer are usually client behaviour; unavailable means no router served a slot.",
                        "reqps", q(f"sum by (reason) (rate(switchboard_errors_total{{{S}}}[{RATE}])) > 0 or sum(rate(switchboard_errors_total{{{S}}}[{RATE}]))", "{{reason}}")))
         .with_panel(ts("Disconnects and refusals, by reason", "Connections ended (switchboard_disconnects_total) and upgrades refused "
                        "(switchboard_connections_refused_total) per second, by reason; client_closed is the normal end.",
                        "reqps",
                        q(f"sum by (reason) (rate(switchboard_disconnects_total{{{S}}}[{RATE}])) > 0 or sum(rate(switchboard_disconnects_total{{{S}}}[{RATE}]))", "disconnect {{reason}}"),
                        q(f"sum by (reason) (rate(switchboard_connections_refused_total{{{S}}}[{RATE}])) > 0 or sum(rate(switchboard_connections_refused_total{{{S}}}[{RATE}]))", "refused {{reason}}")))
         .with_row(db.Row("Latency"))
         .with_panel(ts("Join latency", "From sending join_room to the router to handing the joiner its joined_room "
                        "(switchboard_join_seconds), quantiles over all edges.",
                        "s", *quantiles("switchboard_join_seconds")))
         .with_panel(ts("Relay latency", "From reading a send_to_peer to queueing it on this edge or publishing it on NATS "
                        "(switchboard_relay_seconds), quantiles over all edges.",
                        "s", *quantiles("switchboard_relay_seconds")))
         .with_row(db.Row("Tenants (hosted mode)"))
         .with_panel(ts("Connections by tenant", "Each tenant's connections, summed over the edges (switchboard_tenant_connections).",
                        "short", q(f"sum by (tenant) (switchboard_tenant_connections{{{S}}})", "{{tenant}}"), w=8, stack=True))
         .with_panel(ts("Rooms by tenant", "Each tenant's open rooms, summed over the routers (switchboard_tenant_rooms).",
                        "short", q(f"sum by (tenant) (switchboard_tenant_rooms{{{S}}})", "{{tenant}}"), w=8, stack=True))
         .with_panel(ts("Messages relayed by tenant", "Peer messages of each tenant's connections forwarded per second "
                        "(switchboard_tenant_messages_relayed_total).",
                        "reqps", q(f"sum by (tenant) (rate(switchboard_tenant_messages_relayed_total{{{S}}}[{RATE}]))", "{{tenant}}"), w=8))
         .with_panel(ts("Connection time by tenant", "Seconds of connection per second, i.e. the tenant's average concurrent "
                        "connections, the basis of usage billing (switchboard_tenant_connection_seconds_total).",
                        "short", q(f"sum by (tenant) (rate(switchboard_tenant_connection_seconds_total{{{S}}}[{RATE}]))", "{{tenant}}"), w=12))
         .with_panel(ts("Quota refusals by tenant", "Refusals per second by tenant and quota (switchboard_tenant_quota_refusals_total): "
                        "a tenant at a limit of its tenants file.",
                        "reqps", q(f"sum by (tenant, quota) (rate(switchboard_tenant_quota_refusals_total{{{S}}}[{RATE}]))", "{{tenant}} {{quota}}"), w=12)))
    return d


def edges() -> db.Dashboard:
    d = base("switchboard-edges", "Switchboard / Edges",
             "Per edge: connections against the limit, outbound queues, bus publish latency, the NATS link, CPU and memory.")
    d = (d.with_row(db.Row("Saturation"))
         .with_panel(ts("Connection saturation", "Open connections over the connection limit of each edge "
                        "(switchboard_connections / switchboard_connections_limit). Near 1, upgrades get 503 (capacity).",
                        "percentunit", q(f"switchboard_connections{{{S}}} / switchboard_connections_limit{{{S}}}", "{{instance}}"), maximum=1))
         .with_panel(ts("Connections and limit", "Open connections and the limit in force (--max-connections, or lower if the "
                        "descriptor limit cannot cover it).",
                        "short", q(f"switchboard_connections{{{S}}}", "{{instance}}"),
                        q(f"switchboard_connections_limit{{{S}}}", "limit {{instance}}")))
         .with_panel(ts("Outbound queue fill", "Bytes waiting in all clients' outbound queues over what they may hold "
                        "(--outbound-queue-bytes times the connections). Clients that stop reading fill it.",
                        "percentunit", q(f"switchboard_outbound_queued_bytes{{{S}}} / (switchboard_outbound_queue_bytes_limit{{{S}}} "
                                         f"* clamp_min(switchboard_connections{{{S}}}, 1))", "{{instance}}"), w=8))
         .with_panel(ts("Outbound queued bytes", "Bytes waiting in all clients' outbound queues (switchboard_outbound_queued_bytes).",
                        "bytes", q(f"switchboard_outbound_queued_bytes{{{S}}}", "{{instance}}"), w=8))
         .with_panel(ts("Full queues and slow clients", "Messages that found a client's queue full, by bound, and clients "
                        "closed as slow_consumer, per second.",
                        "reqps", q(f"sum by (instance, bound) (rate(switchboard_outbound_queue_full_total{{{S}}}[{RATE}]))", "full {{bound}} {{instance}}"),
                        q(f'sum by (instance) (rate(switchboard_disconnects_total{{reason="slow_consumer", {S}}}[{RATE}]))', "slow_consumer {{instance}}"), w=8))
         .with_row(db.Row("Bus (NATS)"))
         .with_panel(ts("Bus publish latency p99", "Time to hand a message to NATS (switchboard_bus_publish_seconds), "
                        "p99 per edge and kind; grows when the connection's write buffer is full or the link is down.",
                        "s", q(f'histogram_quantile(0.99, sum by (le, instance, kind) (rate(switchboard_bus_publish_seconds_bucket{{kind=~"relay|heartbeat", {S}}}[{RATE}])))',
                               "{{kind}} {{instance}}")))
         .with_panel(ts("Membership command latency", "From sending a membership command to the router to its being applied "
                        "(switchboard_bus_command_seconds: the NATS request round trip, retries included).",
                        "s", *quantiles("switchboard_bus_command_seconds")))
         .with_panel(ts("NATS link", "1 while the edge is connected to NATS (switchboard_bus_connected).",
                        "short", q(f"switchboard_bus_connected{{{S}}}", "{{instance}}"), w=8, maximum=1))
         .with_panel(ts("NATS slow consumers", "Times NATS dropped messages for the edge (switchboard_bus_slow_consumers_total), "
                        "in the interval; each asks the routers to reconcile.",
                        "short", q(f"sum by (instance) (increase(switchboard_bus_slow_consumers_total{{{S}}}[{RATE}]))", "{{instance}}"), w=8))
         .with_panel(ts("Bus errors and retries", "Failed bus operations by kind (switchboard_bus_errors_total) and command "
                        "attempts repeated while a slot had no router (switchboard_bus_command_retries_total), per second.",
                        "reqps", q(f"sum by (job, instance, kind) (rate(switchboard_bus_errors_total{{{S}}}[{RATE}])) and {IS_EDGE}", "{{kind}} {{instance}}"),
                        q(f"sum by (instance) (rate(switchboard_bus_command_retries_total{{{S}}}[{RATE}]))", "retries {{instance}}"), w=8))
         .with_row(db.Row("Load"))
         .with_panel(ts("Rooms and members on each edge", "Rooms with a member here (switchboard_edge_rooms; a room spread over "
                        "two edges counts on both) and connections in a room (switchboard_edge_room_members).",
                        "short", q(f"switchboard_edge_rooms{{{S}}}", "rooms {{instance}}"),
                        q(f"switchboard_edge_room_members{{{S}}}", "members {{instance}}"), w=8))
         .with_panel(ts("CPU", "Cores in use by each edge (rate of process_cpu_seconds_total).",
                        "short", q(f"rate(process_cpu_seconds_total{{{S}}}[{RATE}]) * {EDGES}", "{{instance}}"), w=8))
         .with_panel(ts("Memory", "Resident memory of each edge (process_resident_memory_bytes).",
                        "bytes", q(f"process_resident_memory_bytes{{{S}}} * {EDGES}", "{{instance}}"), w=8)))
    return d


def routers() -> db.Dashboard:
    d = base("switchboard-routers", "Switchboard / Routers and slots",
             "Slots served by each router, ownership changes, lease store round trips, resync and reconciliation, "
             "what JetStream has not stored yet, commands, rooms and webhooks.")
    served = f"switchboard_router_slots_owned{{{S}}} - switchboard_router_slots_paused{{{S}}}"
    d = (d.with_row(db.Row("Slots"))
         .with_panel(st("Slots served", "Slots served by some router now (owned minus paused, summed): should equal --slots (64 by default).",
                        "short", q(f"sum({served})", "served"), w=6))
         .with_panel(st("Routers alive", "Routers alive as the routers see them (switchboard_router_routers_alive, the lowest view).",
                        "short", q(f"min(switchboard_router_routers_alive{{{S}}})", "routers"), w=6))
         .with_panel(st("Edges alive", "Edges alive as the routers see them (switchboard_router_edges_alive, the lowest view).",
                        "short", q(f"min(switchboard_router_edges_alive{{{S}}})", "edges"), w=6))
         .with_panel(st("Lease store up", "Routers whose lease store (JetStream KV) answers, of all routers "
                        "(switchboard_router_lease_store_up).",
                        "short", q(f"sum(switchboard_router_lease_store_up{{{S}}})", "up"), w=6))
         .with_panel(ts("Slots served per router", "Slots each router serves (owned minus paused; a slot is paused while its "
                        "router cannot hear itself on NATS).",
                        "short", q(served, "{{instance}}"), stack=True))
         .with_panel(ts("Ownership changes", "Slots acquired (takeovers: start-up, rebalancing, failover), handed over on purpose "
                        "(releases), and taken by another router (lease losses), in the interval.",
                        "short", q(f"sum by (instance) (increase(switchboard_router_slot_takeovers_total{{{S}}}[{RATE}]))", "takeovers {{instance}}"),
                        q(f"sum by (instance) (increase(switchboard_router_slot_releases_total{{{S}}}[{RATE}]))", "releases {{instance}}"),
                        q(f"sum by (instance) (increase(switchboard_router_lease_losses_total{{{S}}}[{RATE}]))", "lease losses {{instance}}")))
         .with_row(db.Row("Leases and resync"))
         .with_panel(ts("Lease store round trips p99", "Lease store (JetStream KV) round trips by operation: acquire (taking a slot), "
                        "check (a lease is still ours), probe (the store takes writes) (switchboard_router_lease_seconds).",
                        "s", q(f"histogram_quantile(0.99, sum by (le, op) (rate(switchboard_router_lease_seconds_bucket{{{S}}}[{RATE}])))", "p99 {{op}}"),
                        q(f"histogram_quantile(0.5, sum by (le, op) (rate(switchboard_router_lease_seconds_bucket{{{S}}}[{RATE}])))", "p50 {{op}}"), w=8))
         .with_panel(ts("Resync time", "From acquiring a slot to serving it (switchboard_router_resync_seconds), over every resync "
                        "since the routers started: resyncs happen only at takeovers (see Ownership changes), so a window "
                        "would mostly be empty.",
                        "s", q(f"histogram_quantile(0.99, sum by (le) (switchboard_router_resync_seconds_bucket{{{S}}}))", "p99 since start"),
                        q(f"histogram_quantile(0.5, sum by (le) (switchboard_router_resync_seconds_bucket{{{S}}}))", "p50 since start"), w=8))
         .with_panel(ts("Reconciliations", "Reconciliations of a slot with the edges per second, by reason "
                        "(switchboard_router_reconciles_total), and differences found (corrections, should stay near 0).",
                        "reqps", q(f"sum by (reason) (rate(switchboard_router_reconciles_total{{{S}}}[{RATE}])) > 0 or sum(rate(switchboard_router_reconciles_total{{{S}}}[{RATE}]))", "{{reason}}"),
                        q(f"sum by (kind) (rate(switchboard_router_reconcile_corrections_total{{{S}}}[{RATE}]))", "correction {{kind}}"), w=8))
         .with_panel(ts("Not stored in JetStream yet", "What a router crash would lose (switchboard_router_store_pending): rooms whose "
                        "peak is not written, statistics events not acknowledged. Should return to 0 within a second or two.",
                        "short", q(f"switchboard_router_store_pending{{{S}}}", "{{kind}} {{instance}}"), w=8))
         .with_panel(ts("Bus errors and lost events", "Failed publications by kind (switchboard_bus_errors_total) and times a router "
                        "may have missed events (switchboard_router_lost_events_total), per second.",
                        "reqps", q(f"sum by (job, instance, kind) (rate(switchboard_bus_errors_total{{{S}}}[{RATE}])) and {IS_ROUTER}", "{{kind}} {{instance}}"),
                        q(f"sum by (instance, cause) (rate(switchboard_router_lost_events_total{{{S}}}[{RATE}]))", "lost {{cause}} {{instance}}"), w=8))
         .with_panel(ts("Hears itself", "1 while the router hears its own presence on NATS: it serves only then "
                        "(switchboard_router_hears_itself).",
                        "short", q(f"switchboard_router_hears_itself{{{S}}}", "{{instance}}"), w=8, maximum=1))
         .with_row(db.Row("Commands and rooms"))
         .with_panel(ts("Commands per second", "Membership commands applied, by command (switchboard_router_commands_total).",
                        "reqps", q(f"sum by (command) (rate(switchboard_router_commands_total{{{S}}}[{RATE}]))", "{{command}}"), w=8))
         .with_panel(ts("Command latency", "Time to apply a command and publish its effects (switchboard_router_command_seconds).",
                        "s", *quantiles("switchboard_router_command_seconds"), w=8))
         .with_panel(ts("Rooms and members per router", "Open rooms and their members in the slots each router serves.",
                        "short", q(f"switchboard_rooms{{{S}}} * {ROUTERS}", "rooms {{instance}}"),
                        q(f"switchboard_room_members{{{S}}} * {ROUTERS}", "members {{instance}}"), w=8))
         .with_row(db.Row("Webhooks (hosted mode)"))
         .with_panel(ts("Webhooks pending", "Events queued or in flight (switchboard_webhooks_pending; a router's span its served slots), "
                        "and rooms whose next event waits for a retry (switchboard_webhooks_retrying).",
                        "short", q(f"switchboard_webhooks_pending{{{S}}}", "pending {{instance}}"),
                        q(f"switchboard_webhooks_retrying{{{S}}}", "retrying {{instance}}")))
         .with_panel(ts("Webhooks delivered and dropped", "Events acknowledged with a 2xx, and events given up on by reason, per second.",
                        "reqps", q(f"sum(rate(switchboard_webhooks_sent_total{{{S}}}[{RATE}]))", "sent"),
                        q(f"sum by (reason) (rate(switchboard_webhooks_dropped_total{{{S}}}[{RATE}]))", "dropped {{reason}}")))
         .with_panel(ts("Oldest pending webhook", "Age of the oldest pending webhook event per router (0 when none).",
                        "s", q(f"switchboard_webhooks_oldest_pending_age_seconds{{{S}}}", "{{instance}}"), w=24, h=6)))
    return d


def nats() -> db.Dashboard:
    d = base("switchboard-nats", "Switchboard / NATS link health",
             "How Switchboard's own processes see NATS and JetStream: link state, reconnects, slow consumers, bus errors "
             "and latency. The NATS servers' own metrics come from their exporter, not from here.")
    d = (d.with_row(db.Row("Link"))
         .with_panel(ts("Edges connected", "1 while an edge is connected to NATS (switchboard_bus_connected).",
                        "short", q(f"switchboard_bus_connected{{{S}}}", "{{instance}}"), w=8, maximum=1))
         .with_panel(ts("Routers hearing themselves", "1 while a router hears its own presence on NATS, i.e. its link works both "
                        "ways (switchboard_router_hears_itself).",
                        "short", q(f"switchboard_router_hears_itself{{{S}}}", "{{instance}}"), w=8, maximum=1))
         .with_panel(ts("JetStream lease store", "1 while a router's lease store (JetStream KV sb-leases) answers "
                        "(switchboard_router_lease_store_up).",
                        "short", q(f"switchboard_router_lease_store_up{{{S}}}", "{{instance}}"), w=8, maximum=1))
         .with_panel(ts("Reconnects", "Link state changes of edges seen by the scrapes (changes of switchboard_bus_connected), "
                        "events possibly missed by routers over a reconnect (switchboard_router_lost_events_total{cause=\"reconnect\"}), "
                        "and members re-announced by edges (switchboard_rejoins_total), in the interval.",
                        "short", q(f"changes(switchboard_bus_connected{{{S}}}[{RATE}])", "edge link changes {{instance}}"),
                        q(f'increase(switchboard_router_lost_events_total{{cause="reconnect", {S}}}[{RATE}])', "router reconnect {{instance}}"),
                        q(f"increase(switchboard_rejoins_total{{{S}}}[{RATE}])", "rejoins {{instance}}")))
         .with_panel(ts("Slow consumers", "Times NATS dropped messages for a process, in the interval: edges "
                        "(switchboard_bus_slow_consumers_total) and routers (switchboard_router_lost_events_total{cause=\"slow_consumer\"}).",
                        "short", q(f"increase(switchboard_bus_slow_consumers_total{{{S}}}[{RATE}])", "edge {{instance}}"),
                        q(f'increase(switchboard_router_lost_events_total{{cause="slow_consumer", {S}}}[{RATE}])', "router {{instance}}")))
         .with_row(db.Row("Errors and latency"))
         .with_panel(ts("Bus errors by kind", "Failed bus operations per second, by process and kind (switchboard_bus_errors_total).",
                        "reqps", q(f"sum by (instance, kind) (rate(switchboard_bus_errors_total{{{S}}}[{RATE}]))", "{{kind}} {{instance}}")))
         .with_panel(ts("Stale epochs and command retries", "Router messages dropped by edges because their router had been deposed "
                        "(switchboard_bus_stale_epochs_total), and command attempts repeated while a slot had no serving router, per second.",
                        "reqps", q(f"sum(rate(switchboard_bus_stale_epochs_total{{{S}}}[{RATE}]))", "stale epochs"),
                        q(f"sum(rate(switchboard_bus_command_retries_total{{{S}}}[{RATE}]))", "command retries")))
         .with_panel(ts("Publish latency p99 by kind", "Time to hand a message to NATS, p99 over all processes, by kind: "
                        "relay, heartbeat (edges); event, reply, presence (routers) (switchboard_bus_publish_seconds).",
                        "s", q(f"histogram_quantile(0.99, sum by (le, kind) (rate(switchboard_bus_publish_seconds_bucket{{{S}}}[{RATE}])))", "{{kind}}")))
         .with_panel(ts("Request and lease round trips p99", "Round trips through NATS: edges' membership commands "
                        "(switchboard_bus_command_seconds) and routers' lease store operations (switchboard_router_lease_seconds).",
                        "s", q(f"histogram_quantile(0.99, sum by (le) (rate(switchboard_bus_command_seconds_bucket{{{S}}}[{RATE}])))", "command"),
                        q(f"histogram_quantile(0.99, sum by (le, op) (rate(switchboard_router_lease_seconds_bucket{{{S}}}[{RATE}])))", "lease {{op}}"))))
    return d


DASHBOARDS = {
    "overview.json": overview,
    "edges.json": edges,
    "routers.json": routers,
    "nats.json": nats,
}


def render(make) -> str:
    return json.dumps(make().build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed JSON instead of writing it")
    args = parser.parse_args()
    stale = []
    for name, make in DASHBOARDS.items():
        path = HERE / name
        text = render(make)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"generate.py: {', '.join(stale)} differ from a fresh generation: run "
              '"$(scripts/grafana-sdk)" charts/switchboard/dashboards/generate.py and commit', file=sys.stderr)
        return 1
    if args.check:
        print(f"generate.py: the {len(DASHBOARDS)} dashboards are up to date", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
