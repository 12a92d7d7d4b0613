"""Writes the Grafana dashboards of deploy/observability/dashboards/ (run from anywhere:
`python3 deploy/observability/dashboards/generate.py`). Kept as code so the three dashboards
share one panel shape; the JSON files are what Grafana imports and what the tests read (every
`expr` is evaluated by a real Prometheus scraping the platform: e2e/tests/observability.rs)."""

import json
import pathlib

HERE = pathlib.Path(__file__).parent
DS = {"type": "prometheus", "uid": "${datasource}"}


def panel(pid, title, exprs, unit="short", x=0, y=0, w=12, h=8, legend="{{service}}"):
    targets = []
    for i, expr in enumerate(exprs):
        if isinstance(expr, tuple):
            expr, fmt = expr
        else:
            fmt = legend
        targets.append({"refId": chr(65 + i), "datasource": DS, "expr": expr, "legendFormat": fmt})
    return {
        "id": pid,
        "type": "timeseries",
        "title": title,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": targets,
    }


def dashboard(uid, title, panels, service_var=False):
    variables = [
        {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"}
    ]
    if service_var:
        variables.append(
            {
                "name": "service",
                "type": "query",
                "datasource": DS,
                "query": "label_values(rpc_server_duration_seconds_count, service)",
                "includeAll": True,
                "multi": True,
                "allValue": ".*",
            }
        )
    return {
        "uid": uid,
        "title": title,
        "tags": ["ordermesh"],
        "schemaVersion": 39,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "templating": {"list": variables},
        "panels": panels,
    }


def layout(panels):
    for i, p in enumerate(panels):
        p["gridPos"]["x"] = (i % 2) * 12
        p["gridPos"]["y"] = (i // 2) * 8
    return panels


golden = layout([
    panel(1, "API requests per second by route", [
        'sum by (http_route) (rate(http_server_request_duration_seconds_count{service="bff"}[5m]))'
    ], "reqps", legend="{{http_route}}"),
    panel(2, "API error ratio (5xx)", [
        'sum(rate(http_server_request_duration_seconds_count{service="bff", http_response_status_code=~"5.."}[5m])) '
        '/ sum(rate(http_server_request_duration_seconds_count{service="bff"}[5m]))'
    ], "percentunit", legend="5xx"),
    panel(3, "API p95 latency by route (objective 200 ms)", [
        'histogram_quantile(0.95, sum by (http_route, le) (rate(http_server_request_duration_seconds_bucket{service="bff"}[5m])))'
    ], "s", legend="{{http_route}}"),
    panel(4, "API answers by status and principal kind", [
        'sum by (http_response_status_code, principal) (rate(http_server_request_duration_seconds_count{service="bff"}[5m]))'
    ], "reqps", legend="{{http_response_status_code}} {{principal}}"),
    panel(5, "RPCs served per second", [
        'sum by (service) (rate(rpc_server_duration_seconds_count{service=~"$service"}[5m]))'
    ], "reqps"),
    panel(6, "RPC p95 latency (server)", [
        'histogram_quantile(0.95, sum by (service, le) (rate(rpc_server_duration_seconds_bucket{service=~"$service"}[5m])))'
    ], "s"),
    panel(7, "RPC errors by code (server)", [
        'sum by (service, rpc_grpc_status_code) (rate(rpc_server_duration_seconds_count{service=~"$service", rpc_grpc_status_code!="0"}[5m]))'
    ], "reqps", legend="{{service}} {{rpc_grpc_status_code}}"),
    panel(8, "RPC p95 latency to peers (client)", [
        'histogram_quantile(0.95, sum by (service, peer, le) (rate(rpc_client_duration_seconds_bucket{service=~"$service"}[5m])))'
    ], "s", legend="{{service}} → {{peer}}"),
    panel(9, "Database pool in use", [
        'max by (service) (db_pool_connections{state="used", service=~"$service"}) / max by (service) (db_pool_max{service=~"$service"})'
    ], "percentunit"),
    panel(10, "Cache hit ratio", [
        'sum by (service) (rate(cache_requests_total{result="hit"}[5m])) / sum by (service) (rate(cache_requests_total[5m]))'
    ], "percentunit"),
    panel(11, "Notification streams open", [
        'sum by (surface) (sse_streams_open{service="bff"})'
    ], "short", legend="{{surface}}"),
])

saga = layout([
    panel(1, "Orders by state (transitions per minute)", [
        'sum by (event_type) (rate(outbox_published_total{service="order-svc", topic="order-events", '
        'event_type=~"OrderPlaced|OrderConfirmed|OrderRejected|OrderCancelled|OrderStatusChanged"}[5m])) * 60'
    ], "short", legend="{{event_type}}"),
    panel(2, "Orders placed and confirmed (last hour)", [
        'sum by (event_type) (increase(outbox_published_total{service="order-svc", event_type=~"OrderPlaced|OrderConfirmed"}[1h]))'
    ], "short", legend="{{event_type}}"),
    panel(3, "PlaceOrder p95 latency", [
        'histogram_quantile(0.95, sum by (le) (rate(rpc_server_duration_seconds_bucket{service="order-svc", rpc_method="/ordermesh.order.v1.OrderService/PlaceOrder"}[5m])))'
    ], "s", legend="PlaceOrder"),
    panel(4, "Saga step lag: events to order-svc and payment-svc (p95)", [
        'histogram_quantile(0.95, sum by (service, topic, le) (rate(events_consumer_lag_seconds_bucket{service=~"order-svc|payment-svc|product-svc"}[5m])))'
    ], "s", legend="{{service}} ← {{topic}}"),
    panel(5, "Notifications created by kind", [
        'sum by (kind) (rate(notifications_created_total[5m])) * 60'
    ], "short", legend="{{kind}}"),
    panel(6, "Placed → confirmed (p50, p95)", [
        ('histogram_quantile(0.5, sum by (le) (rate(orders_time_to_confirm_seconds_bucket{service="order-svc"}[5m])))', "p50"),
        ('histogram_quantile(0.95, sum by (le) (rate(orders_time_to_confirm_seconds_bucket{service="order-svc"}[5m])))', "p95"),
    ], "s"),
])

bus = layout([
    panel(1, "Outbox backlog (rows not yet published)", ['max by (service) (outbox_backlog)']),
    panel(2, "Oldest pending outbox row", ['max by (service) (outbox_oldest_pending_age_seconds)'], "s"),
    panel(3, "Events published per second", [
        'sum by (service, topic) (rate(outbox_published_total[5m]))'
    ], "short", legend="{{service}} → {{topic}}"),
    panel(4, "Consumer lag p95", [
        'histogram_quantile(0.95, sum by (service, topic, le) (rate(events_consumer_lag_seconds_bucket[5m])))'
    ], "s", legend="{{service}} ← {{topic}}"),
    panel(5, "Deliveries by outcome", [
        'sum by (service, outcome) (rate(events_consumed_total[5m]))'
    ], "short", legend="{{service}} {{outcome}}"),
    panel(6, "Redeliveries and dead letters", [
        ('sum by (service, topic) (increase(events_redelivered_total[1h]))', "redelivered {{service}} {{topic}}"),
        ('sum by (service, topic) (increase(events_dead_lettered_total[1h]))', "dead {{service}} {{topic}}"),
    ], "short"),
    panel(7, "Publish failures", ['sum by (service) (increase(outbox_publish_failures_total[1h]))']),
])

for name, board in [
    ("golden-signals", dashboard("ordermesh-golden", "ordermesh — golden signals", golden, service_var=True)),
    ("saga", dashboard("ordermesh-saga", "ordermesh — order saga", saga)),
    ("bus", dashboard("ordermesh-bus", "ordermesh — event bus", bus)),
]:
    (HERE / f"{name}.json").write_text(json.dumps(board, indent=2) + "\n")
