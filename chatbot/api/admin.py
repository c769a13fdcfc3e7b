"""Admin API for operators: the instances' current metrics, their history, the alerts;
the posyandu and who serves them.

Read from the snapshots and alerts each instance's collector saves (chatbot/collector.py),
so any instance answers for all of them.
"""

# ruff: noqa: N815 -- field names follow the API's camelCase JSON, as in schemas.py

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field, field_validator

from chatbot.api import parse_body, parse_query
from chatbot.api.auth import auth_required
from chatbot.api.schemas import NewPosyandu, RoleGrant
from chatbot.db.metrics import AlertRepository, MetricsRepository
from chatbot.errors import InvalidInputError
from chatbot.services import services

bp = Blueprint("admin", __name__)

# An instance whose newest snapshot is older than this many intervals is not current.
CURRENT_INTERVALS = 3
DEFAULT_HISTORY = timedelta(hours=1)
MAX_HISTORY = timedelta(days=31)
DEFAULT_ALERTS = timedelta(days=7)
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


# --- shapes (also the OpenAPI document's) ---------------------------------------------


class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, populate_by_name=True)

    from_: datetime | None = Field(
        default=None, alias="from", description="ISO 8601; UTC if no zone"
    )
    to: datetime | None = Field(default=None, description="ISO 8601; default now")
    instance: str | None = Field(default=None, max_length=100)

    @field_validator("from_", "to", mode="before")
    @classmethod
    def _not_a_number(cls, v: object) -> object:
        # pydantic would also read a number as Unix seconds (from=2026 -> 1970-01-01T00:33:46Z);
        # the documented form is ISO 8601 only (found by tests/integration/test_fuzz.py).
        if isinstance(v, str) and _NUMBER.fullmatch(v.strip()):
            raise ValueError("must be an ISO 8601 date-time, not a number")
        return v

    @field_validator("from_", "to")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            return v.replace(tzinfo=UTC)
        return v


class HistoryQuery(_Query):
    limit: int = Field(default=2000, ge=1, le=10000, description="newest snapshots kept")


class AlertsQuery(_Query):
    state: Literal["open", "resolved"] | None = None
    limit: int = Field(default=100, ge=1, le=1000)


class WorkerFigures(BaseModel):
    pid: int
    rss: int
    cpu: float


class Memory(BaseModel):
    rss: int = Field(description="bytes, the master and all its processes")
    maxWorkerRss: int
    workers: list[WorkerFigures]


class Cpu(BaseModel):
    percent: float = Field(description="share of the whole machine over the interval")
    cores: int


class ResponseTime(BaseModel):
    average: float | None
    p50: float | None
    p95: float | None
    p99: float | None


class CacheTier(BaseModel):
    hits: int
    misses: int
    errors: int
    hitRate: float | None


class Calls(BaseModel):
    calls: int
    errors: int
    averageMs: float | None


class Totals(BaseModel):
    requests: int
    errors: int


class Snapshot(BaseModel):
    id: str
    timestamp: datetime
    instance: str
    intervalSeconds: float
    uptime: float
    memory: Memory
    cpu: Cpu
    activeConnections: int
    requestCount: int
    errorCount: int
    clientErrorCount: int
    serverErrorCount: int
    errorsByStatus: dict[str, int]
    throughput: float
    responseTime: ResponseTime
    cache: dict[str, CacheTier]
    mongodb: Calls
    redis: Calls
    shed: dict[str, int]
    totals: Totals


class CurrentMetrics(BaseModel):
    generatedAt: datetime
    intervalSeconds: int
    instances: list[Snapshot]
    total: dict[str, float | int | None]


class MetricsHistory(BaseModel):
    start: datetime = Field(alias="from")
    to: datetime
    snapshots: list[Snapshot]


class Alert(BaseModel):
    id: str
    kind: Literal["high_memory_usage", "high_cpu_usage", "high_response_time"]
    instance: str
    state: Literal["open", "resolved"]
    openedAt: datetime
    lastSeenAt: datetime
    resolvedAt: datetime | None = None
    value: float | None
    peak: float | None = None
    clearedValue: float | None = None
    threshold: float
    message: str
    details: dict[str, Any]


class Alerts(BaseModel):
    alerts: list[Alert]


# --- views ------------------------------------------------------------------------------


def _now() -> datetime:
    return services().clock.now()


@bp.get("/admin/metrics/current")
@auth_required("admin")
def current_metrics() -> ResponseReturnValue:
    """The newest snapshot of every instance that reported lately, and their sum."""
    interval = current_app.config["SETTINGS"].metrics_interval_s
    now = _now()
    since = now - timedelta(seconds=CURRENT_INTERVALS * interval + 5)
    instances = MetricsRepository(services().db).latest_per_instance(since)
    return jsonify(
        generatedAt=now, intervalSeconds=interval, instances=instances, total=_total(instances)
    )


def _total(instances: list[dict[str, Any]]) -> dict[str, float | int | None]:
    """The instances added up (response times: the slowest instance's)."""

    def slowest(key: str) -> float | None:
        values = [i["responseTime"][key] for i in instances if i["responseTime"][key] is not None]
        return max(values, default=None)

    return {
        "instances": len(instances),
        "requestCount": sum(i["requestCount"] for i in instances),
        "errorCount": sum(i["errorCount"] for i in instances),
        "throughput": round(sum(i["throughput"] for i in instances), 3),
        "activeConnections": sum(i["activeConnections"] for i in instances),
        "rss": sum(i["memory"]["rss"] for i in instances),
        "p95": slowest("p95"),
        "average": slowest("average"),
    }


def _window(query: _Query) -> tuple[datetime, datetime]:
    end = query.to or _now()
    start = query.from_ or end - DEFAULT_HISTORY
    if start > end:
        raise InvalidInputError("'from' must be before 'to'.", code="validation_error")
    if end - start > MAX_HISTORY:
        raise InvalidInputError("Ask for at most 31 days at once.", code="validation_error")
    return start, end


@bp.get("/admin/metrics/history")
@auth_required("admin")
def metrics_history() -> ResponseReturnValue:
    """Snapshots between `from` and `to` (default: the last hour), oldest first."""
    query = parse_query(HistoryQuery)
    start, end = _window(query)
    snapshots = MetricsRepository(services().db).history(start, end, query.instance, query.limit)
    return jsonify({"from": start, "to": end, "snapshots": snapshots})


@bp.get("/admin/alerts")
@auth_required("admin")
def alerts() -> ResponseReturnValue:
    """Alerts newest first: open ones (any age), and resolved ones opened in the window
    (default: the last 7 days); `state` picks one of the two."""
    query = parse_query(AlertsQuery)
    repo = AlertRepository(services().db)
    if query.state == "open":
        found = repo.list("open", query.from_, query.to, query.instance, query.limit)
        return jsonify(alerts=found)
    start = query.from_ or (query.to or _now()) - DEFAULT_ALERTS
    found = repo.list("resolved", start, query.to, query.instance, query.limit)
    if query.state is None:  # both: every open one, then the window's resolved ones
        found = repo.list("open", None, None, query.instance, query.limit) + found
        found.sort(key=lambda a: a["openedAt"], reverse=True)
    return jsonify(alerts=found[: query.limit])


# --- posyandu and roles -------------------------------------------------------------------


@bp.get("/admin/posyandu")
@auth_required("admin")
def list_posyandu() -> ResponseReturnValue:
    """Every posyandu, by code."""
    return jsonify(posyandu=services().staff.posyandu.list())


@bp.post("/admin/posyandu")
@auth_required("admin")
def create_posyandu() -> ResponseReturnValue:
    """A posyandu and the code its cadres give parents; 409 if the code is taken."""
    body = parse_body(NewPosyandu)
    created = services().staff.add_posyandu(body.code, body.name)
    return jsonify(posyandu=created), 201


@bp.put("/admin/roles")
@auth_required("admin")
def grant_role() -> ResponseReturnValue:
    """A registered number's role, and the posyandu a health worker serves (as
    `flask --app wsgi chatbot grant-role`): it applies to the user's next request. The
    number is in the body, not the path: paths are logged (nginx), phone numbers never."""
    body = parse_body(RoleGrant)
    granted = services().staff.grant_role(body.phoneNumber, body.role, body.posyandu)
    return jsonify(granted)
