"""A stand-in for HubSpot's CRM v3 objects API on 127.0.0.1, written from HubSpot's public
documentation: only the endpoints the adapter uses (contacts, notes and tickets: create,
read, update, search), checking what HubSpot checks (the private app's Bearer token,
required properties, property names, email format, unique emails, association type ids,
search filters and limits, ``after`` paging) and answering in HubSpot's shapes
(``{"status": "error", "message", "category"}`` on errors).

On demand: the next requests answer 429 with Retry-After, 500, or late (beyond the
client's timeout). Every request is recorded with its arrival time (``calls``).
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.http_api import Call, RecordingApi

PAGE_SIZE = 2  # HubSpot pages up to 200; 2 makes every multi-result search page
KNOWN_PROPERTIES = {
    "contacts": {"email", "phone", "firstname", "lastname", "rapport_identity"},
    "notes": {"hs_timestamp", "hs_note_body"},
    "tickets": {"subject", "content", "hs_pipeline", "hs_pipeline_stage", "hs_ticket_priority"},
}
REQUIRED = {"notes": {"hs_timestamp"}, "tickets": {"subject", "hs_pipeline", "hs_pipeline_stage"}}
# HUBSPOT_DEFINED association type ids from each object type to contacts.
TO_CONTACT = {"notes": 202, "tickets": 16}
PIPELINES = {"0": {"1", "2", "3", "4"}}  # the default Support pipeline and its stages
PRIORITIES = {"LOW", "MEDIUM", "HIGH", "URGENT"}
DATETIME_PROPERTIES = {"hs_timestamp"}
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PATH = re.compile(r"^/crm/v3/objects/(contacts|notes|tickets)(?:/(search|[0-9]+))?$")


class HubSpotError(Exception):
    def __init__(self, status: int, category: str, message: str) -> None:
        super().__init__(message)
        self.status, self.category, self.message = status, category, message


class FakeHubSpotApi(RecordingApi):
    """``root_url`` goes to HUBSPOT_API_BASE_URL; ``token`` is the private app's token."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token
        # The base handler knows GET and POST; HubSpot updates with PATCH.
        handler = self._server.RequestHandlerClass
        handler.do_PATCH = handler.do_POST  # type: ignore[attr-defined]
        self.objects: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in KNOWN_PROPERTIES}
        self.merged: dict[str, str] = {}  # a merged-away contact id -> the surviving one
        self._next_id = 101
        self._faults: list[tuple[str | None, int, float | None]] = []
        self._delays: list[tuple[str | None, float]] = []

    # Test controls ---------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        times: int = 1,
        route: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Answer the next ``times`` requests (of ``route``, e.g. ``create notes``) with
        ``status`` (429: with ``retry_after`` seconds in Retry-After)."""
        with self.lock:
            self._faults.extend([(route, status, retry_after)] * times)

    def delay_next(self, seconds: float, route: str | None = None) -> None:
        """Answer the next request (of ``route``) ``seconds`` late."""
        with self.lock:
            self._delays.append((route, seconds))

    def add(self, kind: str, properties: dict[str, str], to_contact: str | None = None) -> str:
        """Store an object directly (as if made in HubSpot's UI); its id."""
        with self.lock:
            return self._store(kind, properties, [to_contact] if to_contact else [])

    def routes(self, name: str) -> list[Any]:
        """Recorded calls of one route (``search notes``...), in arrival order."""
        return self.calls_to(name)

    # HTTP ------------------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        arrived = time.monotonic()
        url = urlsplit(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        route, status = "unknown", 200
        body: dict[str, Any] = {}
        headers: dict[str, str] = {}
        try:
            match = PATH.match(url.path)
            if not match:
                raise HubSpotError(404, "OBJECT_NOT_FOUND", f"No route for {url.path}")
            kind, tail = match.groups()
            verb = request.command
            route = {
                ("POST", None): "create",
                ("POST", "search"): "search",
                ("GET", "id"): "get",
                ("PATCH", "id"): "update",
            }.get((verb, None if tail is None else "search" if tail == "search" else "id"), "")
            if not route:
                raise HubSpotError(405, "VALIDATION_ERROR", f"{verb} not allowed here")
            route = f"{route} {kind}"
            params = json.loads(raw) if raw else {}
            with self.lock:
                self.calls.append(Call(route, params, arrived))
            self._check_token(request.headers.get("Authorization", ""))
            delay, fault = self._take(route)
            time.sleep(delay)
            if fault is not None:
                status, retry_after = fault
                if status == 429:
                    headers["Retry-After"] = str(int(retry_after or 1))
                    raise HubSpotError(429, "RATE_LIMITS", "You have reached your secondly limit.")
                raise HubSpotError(status, "INTERNAL_ERROR", "internal error")
            status, body = self._answer(route, tail, params, parse_qs(url.query))
        except HubSpotError as error:
            status = error.status
            body = {"status": "error", "message": error.message, "category": error.category}
            body["correlationId"] = "00000000-0000-0000-0000-000000000000"
        except (ValueError, TypeError) as error:
            status = 400
            body = {
                "status": "error",
                "message": f"Invalid input JSON: {error}",
                "category": "VALIDATION_ERROR",
            }
        data = json.dumps(body).encode()
        try:
            request.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                request.send_header(name, value)
            request.send_header("Content-Length", str(len(data)))
            request.end_headers()
            request.wfile.write(data)
        except OSError:
            pass  # the client gave up waiting (a timeout test)

    def _check_token(self, header: str) -> None:
        if header != f"Bearer {self.token}":
            raise HubSpotError(
                401,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 "
                "authentication",
            )

    def _take(self, route: str) -> tuple[float, tuple[int, float | None] | None]:
        with self.lock:
            delay = next((d for d in self._delays if d[0] in (None, route)), None)
            if delay is not None:
                self._delays.remove(delay)
            fault = next((f for f in self._faults if f[0] in (None, route)), None)
            if fault is not None:
                self._faults.remove(fault)
        return (delay[1] if delay else 0.0), ((fault[1], fault[2]) if fault else None)

    # The API ---------------------------------------------------------------------------

    def _answer(
        self, route: str, object_id: str | None, params: dict[str, Any], query: dict[str, list[str]]
    ) -> tuple[int, dict[str, Any]]:
        action, kind = route.split()
        with self.lock:
            if action == "create":
                properties = self._valid_properties(kind, params.get("properties"), creating=True)
                contacts = self._associations(kind, params.get("associations") or [])
                return 201, self._public(kind, self._store(kind, properties, contacts))
            if action == "search":
                return 200, self._search(kind, params)
            found = self.objects[kind].get(self.merged.get(str(object_id), str(object_id)))
            if found is None:
                raise HubSpotError(404, "OBJECT_NOT_FOUND", "resource not found")
            if action == "get":
                wanted = [p for value in query.get("properties", []) for p in value.split(",")]
                return 200, self._public(kind, found["id"], wanted)
            properties = self._valid_properties(kind, params.get("properties"), creating=False)
            self._check_unique_email(kind, properties, found["id"])
            found["properties"].update(properties)
            found["updatedAt"] = _now()
            return 200, self._public(kind, found["id"])

    def _valid_properties(self, kind: str, given: Any, creating: bool) -> dict[str, str]:
        if not isinstance(given, dict):
            raise HubSpotError(400, "VALIDATION_ERROR", "properties: must be an object")
        unknown = sorted(set(given) - KNOWN_PROPERTIES[kind])
        if unknown:
            raise HubSpotError(
                400,
                "VALIDATION_ERROR",
                f"Property values were not valid: PROPERTY_DOESNT_EXIST {unknown}",
            )
        missing = (
            sorted(REQUIRED.get(kind, set()) - {k for k, v in given.items() if v})
            if creating
            else []
        )
        if missing:
            raise HubSpotError(400, "VALIDATION_ERROR", f"Missing required properties: {missing}")
        email = given.get("email")
        if email and not EMAIL.match(email):
            raise HubSpotError(
                400,
                "VALIDATION_ERROR",
                f"Property values were not valid: Email address {email} is invalid",
            )
        if kind == "tickets":
            pipeline = given.get("hs_pipeline")
            if pipeline is not None and pipeline not in PIPELINES:
                raise HubSpotError(400, "VALIDATION_ERROR", f"{pipeline} is not a valid pipeline")
            stage = given.get("hs_pipeline_stage")
            if stage is not None and stage not in PIPELINES.get(pipeline or "0", set()):
                raise HubSpotError(
                    400, "VALIDATION_ERROR", f"{stage} is not a valid pipeline stage"
                )
            priority = given.get("hs_ticket_priority")
            if priority is not None and priority not in PRIORITIES:
                raise HubSpotError(400, "VALIDATION_ERROR", f"{priority} is not a valid priority")
        if kind == "notes" and len(given.get("hs_note_body") or "") > 65536:
            raise HubSpotError(400, "VALIDATION_ERROR", "hs_note_body is over 65536 characters")
        properties = {k: str(v) for k, v in given.items()}
        for name in DATETIME_PROPERTIES & set(properties):
            properties[name] = _iso(properties[name])  # HubSpot stores and answers ISO 8601
        if creating:
            self._check_unique_email(kind, properties, None)
        return properties

    def _check_unique_email(self, kind: str, properties: dict[str, str], own: str | None) -> None:
        email = (properties.get("email") or "").lower()
        for other in self.objects[kind].values() if email and kind == "contacts" else []:
            if other["id"] != own and (other["properties"].get("email") or "").lower() == email:
                raise HubSpotError(
                    409, "CONFLICT", f"Contact already exists. Existing ID: {other['id']}"
                )

    def _associations(self, kind: str, given: list[Any]) -> list[str]:
        contacts = []
        for association in given:
            to = (association.get("to") or {}).get("id")
            types = association.get("types") or []
            if str(to) not in self.objects["contacts"]:
                raise HubSpotError(
                    400, "VALIDATION_ERROR", f"association target {to} does not exist"
                )
            if not types or any(
                t.get("associationCategory") != "HUBSPOT_DEFINED"
                or t.get("associationTypeId") != TO_CONTACT.get(kind)
                for t in types
            ):
                raise HubSpotError(
                    400,
                    "VALIDATION_ERROR",
                    f"invalid association type for {kind} to contacts: {types}",
                )
            contacts.append(str(to))
        return contacts

    def _search(self, kind: str, params: dict[str, Any]) -> dict[str, Any]:
        groups = params.get("filterGroups") or []
        filters = [f for g in groups for f in g.get("filters") or []]
        if (
            len(groups) > 5
            or any(len(g.get("filters") or []) > 6 for g in groups)
            or len(filters) > 18
        ):
            raise HubSpotError(400, "VALIDATION_ERROR", "too many filterGroups or filters")
        limit = int(params.get("limit") or 10)
        if not 1 <= limit <= 200:
            raise HubSpotError(400, "VALIDATION_ERROR", "limit must be between 1 and 200")
        for f in filters:
            if f.get("propertyName") not in KNOWN_PROPERTIES[kind]:
                raise HubSpotError(
                    400, "VALIDATION_ERROR", f"unknown property {f.get('propertyName')}"
                )
            if f.get("operator") not in {"EQ", "IN"}:
                raise HubSpotError(
                    400, "VALIDATION_ERROR", f"operator {f.get('operator')} is not supported here"
                )
            if f["operator"] == "IN" and any(v != v.lower() for v in f.get("values") or []):
                raise HubSpotError(
                    400, "VALIDATION_ERROR", "IN values on strings must be lower case"
                )
        matches = [
            o
            for o in self.objects[kind].values()
            if not groups
            or any(all(_matches(o, f) for f in g.get("filters") or []) for g in groups)
        ]
        start = int(params.get("after") or 0)
        page = matches[start : start + min(limit, PAGE_SIZE)]
        body: dict[str, Any] = {
            "total": len(matches),
            "results": [self._public(kind, o["id"], params.get("properties") or []) for o in page],
        }
        if start + len(page) < len(matches):
            body["paging"] = {"next": {"after": str(start + len(page)), "link": "?after="}}
        return body

    def _store(self, kind: str, properties: dict[str, str], contacts: list[str]) -> str:
        object_id = str(self._next_id)
        self._next_id += 1
        self.objects[kind][object_id] = {
            "id": object_id,
            "properties": dict(properties),
            "contacts": list(contacts),
            "createdAt": _now(),
            "updatedAt": _now(),
        }
        return object_id

    def _public(self, kind: str, object_id: str, wanted: list[str] | None = None) -> dict[str, Any]:
        """An object as HubSpot answers it: all properties after a write, else the defaults
        plus the ones asked for."""
        stored = self.objects[kind][object_id]
        props = stored["properties"]
        shown = props if wanted is None else {k: props.get(k) for k in wanted}
        defaults = {
            "hs_object_id": object_id,
            "createdate": stored["createdAt"],
            "hs_lastmodifieddate": stored["updatedAt"],
        }
        return {
            "id": object_id,
            "properties": {**defaults, **shown},
            "createdAt": stored["createdAt"],
            "updatedAt": stored["updatedAt"],
            "archived": False,
        }


def _matches(stored: dict[str, Any], spec: dict[str, Any]) -> bool:
    have = stored["properties"].get(spec["propertyName"])
    if have is None:
        return False
    if spec["propertyName"] in DATETIME_PROPERTIES:
        return _iso(have) == _iso(str(spec.get("value")))
    if spec["operator"] == "IN":
        return have.lower() in (spec.get("values") or [])
    return have.lower() == str(spec.get("value")).lower()  # EQ on text ignores case


def _iso(value: str) -> str:
    moment = (
        datetime.fromtimestamp(int(value) / 1000, timezone.utc)
        if value.isdigit()
        else datetime.fromisoformat(value.replace("Z", "+00:00"))
    )
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
