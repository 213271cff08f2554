"""A stand-in for Salesforce's REST API on 127.0.0.1, written from Salesforce's public
documentation: only what the adapter uses (sObject rows by External ID: upsert with PATCH
and read with GET; ``/composite`` with ``allOrNone`` and ``@{referenceId.field}``
references), checking what Salesforce checks: the ``Authorization: Bearer <session id>``
header, the API version in the path, known objects and fields, an External ID field in
the URL and not in the body, required fields (Contact and Lead: LastName; Lead: Company),
restricted picklists, email format, lookups that point at an existing record of the right
object, field lengths. Errors come in Salesforce's shape, a list of
``{"message", "errorCode", "fields"}``.

Upsert: no record with the External ID value creates one (201
``{"id", "success": true, "errors": [], "created": true}``); one updates it (204, no body,
as a standalone upsert answered before API 46.0; in a Composite, 200 with the id, which
is what ``@{ref.id}`` needs). Composite with ``allOrNone`` rolls every sub-request back
when one fails, the others answering ``PROCESSING_HALTED``.

Sign-in (``salesforce_login.py``): SOAP ``login()`` and the OAuth 2.0 JWT bearer flow for
the users and connected apps a test adds to ``logins``; each issues a session id the REST
endpoints accept until ``expire_sessions()``, after which they answer 401
``INVALID_SESSION_ID``, as Salesforce does for an expired session.

On demand: the next requests (sign-in included: routes ``password login``, ``jwt login``)
answer 429 (Retry-After), 403 REQUEST_LIMIT_EXCEEDED, 503, 500, or late (beyond the
client's timeout). Every request is recorded (``calls``).
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote, urlsplit

from tests.fakes.http_api import Call, RecordingApi
from tests.fakes.salesforce_login import FakeLogins, route_of

PREFIX = {"Contact": "003", "Lead": "00Q", "Task": "00T", "Case": "500"}
COMMON = {"Rapport_Key__c", "Rapport_Identity__c"}
FIELDS = {
    "Contact": {"FirstName", "LastName", "Email", "Phone"} | COMMON,
    "Lead": {"FirstName", "LastName", "Email", "Phone", "Company"} | COMMON,
    "Task": {"Subject", "Status", "Priority", "Type", "ActivityDate", "Description", "WhoId"}
    | COMMON,
    "Case": {
        "Subject",
        "Description",
        "Status",
        "Origin",
        "Priority",
        "ContactId",
        "SuppliedName",
        "SuppliedEmail",
        "SuppliedPhone",
    }
    | COMMON,
}
EXTERNAL_IDS = {"Rapport_Key__c"}
REQUIRED = {"Contact": {"LastName"}, "Lead": {"LastName", "Company"}}
DEFAULTS = {"Task": {"Status": "Not Started", "Priority": "Normal"}, "Case": {"Status": "New"}}
PICKLISTS = {
    ("Task", "Status"): {"Not Started", "In Progress", "Completed", "Waiting on someone else"}
    | {"Deferred"},
    ("Task", "Priority"): {"High", "Normal", "Low"},
    ("Case", "Status"): {"New", "Working", "Escalated", "Closed"},
    ("Case", "Priority"): {"High", "Medium", "Low"},
}
LOOKUPS = {("Task", "WhoId"): {"Contact", "Lead"}, ("Case", "ContactId"): {"Contact"}}
MAX_LENGTH = {"Subject": 255, "Description": 32000, "LastName": 80, "FirstName": 40}
EMAILS = {"Email", "SuppliedEmail"}
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
VERSIONS = {f"{n}.0" for n in range(20, 63)}
PATH = re.compile(r"^/services/data/v([0-9.]+)/(composite|sobjects/(\w+)/(\w+)/([^/]+))$")
REFERENCE = re.compile(r"@\{(\w+)\.(\w+)\}")
HALTED = "The transaction was rolled back since another operation in the same transaction failed."


class SalesforceError(Exception):
    def __init__(self, status: int, code: str, message: str, fields: list[str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields or []

    def body(self) -> list[dict[str, Any]]:
        return [{"message": self.message, "errorCode": self.code, "fields": self.fields}]


class FakeSalesforceApi(RecordingApi):
    """``root_url`` goes to SALESFORCE_INSTANCE_URL (and SALESFORCE_LOGIN_URL);
    ``session_id`` is a valid access token from the start."""

    def __init__(self, session_id: str) -> None:
        super().__init__()
        self.session_id = session_id
        self.sessions = {session_id}
        self.logins = FakeLogins(self.root_url, self._issue_session)
        handler = self._server.RequestHandlerClass
        handler.do_PATCH = handler.do_POST  # type: ignore[attr-defined]
        self.records: dict[str, dict[str, dict[str, Any]]] = {o: {} for o in FIELDS}
        self._next = 1
        self._logins = itertools.count(1)
        self._faults: list[tuple[str | None, int, str, float | None]] = []
        self._delays: list[tuple[str | None, float]] = []

    # Test controls ---------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        times: int = 1,
        route: str | None = None,
        code: str = "",
        retry_after: float | None = None,
    ) -> None:
        """Answer the next ``times`` requests (of ``route``: ``composite``, ``upsert Task``,
        ``read Contact``...) with ``status`` and errorCode ``code``."""
        with self.lock:
            self._faults.extend([(route, status, code, retry_after)] * times)

    def delay_next(self, seconds: float, route: str | None = None) -> None:
        """Answer the next request (of ``route``) ``seconds`` late (the write happens)."""
        with self.lock:
            self._delays.append((route, seconds))

    def expire_sessions(self) -> None:
        """Every session id issued so far stops working (as when a session times out)."""
        with self.lock:
            self.sessions.clear()

    def _issue_session(self) -> str:
        with self.lock:
            session_id = f"{self.session_id}.login{next(self._logins):04d}"
            self.sessions.add(session_id)
        return session_id

    def routes(self, name: str) -> list[Call]:
        return self.calls_to(name)

    def by_key(self, kind: str, value: str) -> dict[str, Any] | None:
        """The record of ``kind`` whose Rapport_Key__c is ``value``."""
        with self.lock:
            return next(
                (r for r in self.records[kind].values() if r.get("Rapport_Key__c") == value), None
            )

    # HTTP ------------------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        arrived = time.monotonic()
        url = urlsplit(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        status: int = 200
        body: Any = None
        headers: dict[str, str] = {}
        login = route_of(url.path)
        if login is not None and request.command == "POST":
            self._sign_in(request, login, raw, arrived)
            return
        try:
            match = PATH.match(url.path)
            if not match:
                raise SalesforceError(404, "NOT_FOUND", "The requested resource does not exist")
            version, resource, kind, field, value = match.groups()
            verb = request.command
            route = "composite" if resource == "composite" else f"{verb} {kind}"
            route = route.replace("PATCH ", "upsert ").replace("GET ", "read ")
            params = json.loads(raw) if raw else {}
            with self.lock:
                self.calls.append(Call(route, params, arrived))
            scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
            with self.lock:
                valid = scheme == "Bearer" and token in self.sessions
            if not valid:
                raise SalesforceError(401, "INVALID_SESSION_ID", "Session expired or invalid")
            if version not in VERSIONS:
                raise SalesforceError(404, "NOT_FOUND", "The requested resource does not exist")
            delay, fault = self._take(route)
            if fault is not None:
                raise self._fault(fault, headers)
            with self.lock:
                if resource == "composite" and verb == "POST":
                    status, body = 200, self._composite(version, params)
                elif verb == "PATCH" and kind:
                    status, body = self._upsert(kind, field, unquote(value), params)
                elif verb == "GET" and kind:
                    status, body = 200, self._read(kind, field, unquote(value))
                else:
                    raise SalesforceError(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{verb}'")
            time.sleep(delay)  # the write is made; the answer comes late
        except SalesforceError as error:
            status, body = error.status, error.body()
        except (ValueError, TypeError):
            status = 400
            body = [{"message": "Unexpected character", "errorCode": "JSON_PARSER_ERROR"}]
        self._send(request, status, body, headers)

    def _sign_in(
        self, request: BaseHTTPRequestHandler, route: str, raw: bytes, arrived: float
    ) -> None:
        delay, fault = self._take(route)
        if fault is not None:  # an outage page, not a SOAP fault or an OAuth error
            headers: dict[str, str] = {}
            error = self._fault(fault, headers)
            self.record(route, {})
            self._send(request, error.status, error.body(), headers)
            return
        status, body, content_type, params = self.logins.answer(
            route, urlsplit(request.path).path, request.headers, raw
        )
        with self.lock:
            self.calls.append(Call(route, params, arrived))
        time.sleep(delay)
        self._send(request, status, body, {"Content-Type": content_type})

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, status: int, body: Any, headers: dict) -> None:
        """``body`` as JSON, or as it is when it is bytes (SOAP)."""
        data = (
            body if isinstance(body, bytes) else b"" if status == 204 else json.dumps(body).encode()
        )
        try:
            request.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                request.send_header(name, value)
            request.send_header("Content-Length", str(len(data)))
            request.end_headers()
            request.wfile.write(data)
        except OSError:
            pass  # the client gave up waiting (a timeout test)

    def _take(self, route: str) -> tuple[float, tuple[int, str, float | None] | None]:
        with self.lock:
            delay = next((d for d in self._delays if d[0] in (None, route)), None)
            if delay is not None:
                self._delays.remove(delay)
            fault = next((f for f in self._faults if f[0] in (None, route)), None)
            if fault is not None:
                self._faults.remove(fault)
        return (delay[1] if delay else 0.0), ((fault[1], fault[2], fault[3]) if fault else None)

    @staticmethod
    def _fault(fault: tuple[int, str, float | None], headers: dict[str, str]) -> SalesforceError:
        status, code, retry_after = fault
        if retry_after is not None:
            headers["Retry-After"] = str(int(retry_after))
        if status == 403:
            code = code or "REQUEST_LIMIT_EXCEEDED"
            return SalesforceError(403, code, "TotalRequests Limit exceeded.")
        if status == 429:
            return SalesforceError(429, code or "REQUEST_LIMIT_EXCEEDED", "Too many requests")
        if status == 503:
            return SalesforceError(503, code or "SERVER_UNAVAILABLE", "Server unavailable")
        return SalesforceError(status, code or "UNKNOWN_EXCEPTION", "An unexpected error occurred")

    # The API (called with the lock held) -----------------------------------------------

    def _record_of(self, kind: str, field: str, value: str) -> dict[str, Any] | None:
        if kind not in FIELDS:
            raise SalesforceError(404, "NOT_FOUND", "The requested resource does not exist")
        if field not in EXTERNAL_IDS:
            raise SalesforceError(
                404, "NOT_FOUND", "Provided external ID field does not exist or is not accessible"
            )
        return next((r for r in self.records[kind].values() if r.get(field) == value), None)

    def _read(self, kind: str, field: str, value: str) -> dict[str, Any]:
        found = self._record_of(kind, field, value)
        if found is None:
            raise SalesforceError(404, "NOT_FOUND", "The requested resource does not exist")
        return {"attributes": {"type": kind}, **found}

    def _upsert(
        self, kind: str, field: str, value: str, given: Any, in_composite: bool = False
    ) -> tuple[int, Any]:
        found = self._record_of(kind, field, value)
        fields = self._valid(kind, given, field, creating=found is None)
        if found is None:
            record_id = f"{PREFIX[kind]}{self._next:012d}AAA"
            self._next += 1
            self.records[kind][record_id] = {
                "Id": record_id,
                **DEFAULTS.get(kind, {}),
                **fields,
                field: value,
            }
            return 201, {"id": record_id, "success": True, "errors": [], "created": True}
        found.update(fields)
        if in_composite:
            return 200, {"id": found["Id"], "success": True, "errors": [], "created": False}
        return 204, None

    def _valid(self, kind: str, given: Any, external: str, creating: bool) -> dict[str, Any]:
        if not isinstance(given, dict):
            raise SalesforceError(400, "JSON_PARSER_ERROR", "the body must be a JSON object")
        if external in given:
            raise SalesforceError(
                400, "INVALID_FIELD", f"{external} is the External ID of the URL", [external]
            )
        for name, value in given.items():
            if name not in FIELDS[kind]:
                raise SalesforceError(
                    400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {kind}"
                )
            if isinstance(value, str) and len(value) > MAX_LENGTH.get(name, 255 * 128):
                raise SalesforceError(400, "STRING_TOO_LONG", f"{name}: data value too large")
            allowed = PICKLISTS.get((kind, name))
            if allowed is not None and value not in allowed:
                raise SalesforceError(
                    400,
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    f"bad value for restricted picklist field: {value}",
                    [name],
                )
            if name in EMAILS and value and not EMAIL.match(str(value)):
                raise SalesforceError(
                    400, "INVALID_EMAIL_ADDRESS", f"{name}: invalid email address: {value}", [name]
                )
            targets = LOOKUPS.get((kind, name))
            if targets is not None and not any(value in self.records[t] for t in targets):
                raise SalesforceError(
                    400,
                    "INVALID_CROSS_REFERENCE_KEY",
                    f"{name}: id value of incorrect type: {value}",
                    [name],
                )
        missing = sorted(REQUIRED.get(kind, set()) - {k for k, v in given.items() if v})
        if creating and missing:
            raise SalesforceError(
                400,
                "REQUIRED_FIELD_MISSING",
                f"Required fields are missing: {missing}",
                missing,
            )
        return dict(given)

    def _composite(self, version: str, params: Any) -> dict[str, Any]:
        requests = params.get("compositeRequest") if isinstance(params, dict) else None
        if not isinstance(requests, list) or not 1 <= len(requests) <= 25:
            raise SalesforceError(400, "INVALID_INPUT", "compositeRequest: 1 to 25 subrequests")
        refs = [r.get("referenceId") for r in requests]
        if len(set(refs)) != len(refs) or not all(isinstance(r, str) and r for r in refs):
            raise SalesforceError(400, "INVALID_INPUT", "referenceId must be unique and given")
        all_or_none = bool(params.get("allOrNone"))
        saved = copy.deepcopy(self.records)
        answers: list[dict[str, Any]] = []
        results: dict[str, dict[str, Any]] = {}
        failed = False
        for sub in requests:
            ref = sub["referenceId"]
            if failed and all_or_none:
                answers.append(
                    _answer(ref, 400, [{"errorCode": "PROCESSING_HALTED", "message": HALTED}])
                )
                continue
            try:
                status, body = self._sub(version, sub, results)
                if isinstance(body, dict):
                    results[ref] = body
                answers.append(_answer(ref, status, body))
            except SalesforceError as error:
                failed = True
                answers.append(_answer(ref, error.status, error.body()))
        if failed and all_or_none:  # roll back what the earlier sub-requests wrote
            self.records = saved
            answers = [
                a
                if a["httpStatusCode"] >= 300
                else _answer(
                    a["referenceId"], 400, [{"errorCode": "PROCESSING_HALTED", "message": HALTED}]
                )
                for a in answers
            ]
        return {"compositeResponse": answers}

    def _sub(
        self, version: str, sub: dict[str, Any], results: dict[str, dict[str, Any]]
    ) -> tuple[int, Any]:
        match = PATH.match(str(sub.get("url") or ""))
        if not match or match.group(1) != version or match.group(2) == "composite":
            raise SalesforceError(400, "INVALID_INPUT", "unsupported subrequest url")
        _, _, kind, field, value = match.groups()

        def resolve(text: str) -> str:
            def one(found: re.Match[str]) -> str:
                ref, name = found.groups()
                if ref not in results or name not in results[ref]:
                    raise SalesforceError(
                        400, "INVALID_REFERENCE", f"Invalid reference specified: {ref}.{name}"
                    )
                return str(results[ref][name])

            return REFERENCE.sub(one, text)

        body = {
            k: resolve(v) if isinstance(v, str) else v for k, v in (sub.get("body") or {}).items()
        }
        if sub.get("method") == "PATCH":
            return self._upsert(kind, field, unquote(value), body, in_composite=True)
        if sub.get("method") == "GET":
            return 200, self._read(kind, field, unquote(value))
        raise SalesforceError(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{sub.get('method')}'")


def _answer(ref: str, status: int, body: Any) -> dict[str, Any]:
    return {"body": body, "httpHeaders": {}, "httpStatusCode": status, "referenceId": ref}
