"""Salesforce as the remote CRM: a Contact (or Lead), a completed Task per conversation,
a Case per ticket.

Built on ``simple-salesforce`` for the REST calls. Sign-in is a given session id, or ours
(:mod:`crm_bridge.remote.salesforce_login`: a password login or a JWT bearer flow at
``SALESFORCE_LOGIN_URL``), done again once when Salesforce answers that the session
expired, the refused request then repeated. Every request first waits for the
process-wide :mod:`rate limiter <crm_bridge.remote.ratelimit>` (an org has a daily API-call
allowance; ``SALESFORCE_REQUESTS_PER_DAY`` is this process's share) and has a timeout, set
on the client's requests session.

Idempotency needs no search: every write is an upsert (``PATCH
/sobjects/<Object>/<ExternalIdField>/<value>``) on an External ID field we own, keyed by
our record (``contact-3``, ``interaction-42``, ``ticket-7``). Salesforce creates the record
the first time and updates it on any retry, so a crash between its answer and
``refs.put`` costs a repeated update, never a duplicate. A customer new to Salesforce and
their first Task or Case are written in one Composite request (``allOrNone``), the child
pointing at the parent's upsert result through ``@{refContact.id}``: one API call, and no
Task without its Contact.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceError

from crm_bridge.remote.base import (
    EventKind,
    OutboxEvent,
    RemotePermanent,
    RemoteRefs,
    RemoteRetryable,
)
from crm_bridge.remote.mapping import SalesforceMapping
from crm_bridge.remote.ratelimit import RateLimiter, shared_limiter
from crm_bridge.remote.render import contact_identities, conversation_text, parse_time, ticket_text
from crm_bridge.remote.salesforce_http import (
    QuotaSpent,
    Refused,
    TimeoutSession,
    error_code,
    salesforce_limiter,
)
from crm_bridge.remote.salesforce_login import CREDENTIALS, SignIn
from crm_bridge.settings import CrmSettings

# simple-salesforce and urllib3 must never log request bodies (names, transcripts).
logging.getLogger("simple_salesforce").setLevel(logging.INFO)

TIMEOUT = (5.0, 20.0)  # seconds: connect, read
# A child whose parent's id went stale (the contact was deleted or merged in Salesforce):
# written again together with its parent, which recreates it.
_STALE_PARENT = {"INVALID_CROSS_REFERENCE_KEY", "ENTITY_IS_DELETED"}


def external_value(key: str) -> str:
    """Our key as the External ID value: ``interaction:42`` -> ``interaction-42``."""
    return key.replace(":", "-")


class SalesforceCrm:
    """Delivers outbox events to Salesforce (REST API upserts, Composite)."""

    name = "salesforce"

    def __init__(
        self,
        connect: Callable[[], Salesforce],
        mapping: SalesforceMapping,
        limiter: RateLimiter,
        api_version: str,
        credentials: str = CREDENTIALS["token"],
        renewable: bool = False,
    ) -> None:
        self.mapping = mapping
        self.limiter = limiter
        self.api_version = api_version
        self.credentials = credentials  # the variables to name when Salesforce refuses them
        self.renewable = renewable  # connect() signs in anew (password, JWT), once per 401
        self._connect = connect
        self._client: Salesforce | None = None
        self._client_lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, settings: CrmSettings, timeout: float | tuple[float, float] = TIMEOUT
    ) -> SalesforceCrm:
        """The adapter for these settings; the mapping file, the credentials' presence and
        the JWT key are checked here (start-up). Signing in waits for the first delivery, so that an
        unreachable Salesforce delays events instead of stopping the worker."""
        settings.validate_salesforce()  # raises, naming the variables
        sign_in = SignIn.from_settings(settings, timeout)
        mapping = SalesforceMapping.load(settings.salesforce_mapping)
        per_day = settings.salesforce_requests_per_day
        limiter = shared_limiter("salesforce", lambda: salesforce_limiter(per_day))
        version = settings.salesforce_api_version

        def connect() -> Salesforce:
            session = TimeoutSession(timeout)
            signed_in = sign_in(session)  # raises Remote* errors naming no secret
            client = Salesforce(
                session=session,
                version=version,
                instance_url=signed_in.instance_url,
                session_id=signed_in.session_id,
            )
            if signed_in.instance_url.startswith("http://"):  # a local stand-in (tests)
                client.base_url = "http://" + client.base_url.removeprefix("https://")
            return client

        return cls(connect, mapping, limiter, version, sign_in.credentials, sign_in.renewable)

    def deliver(self, event: OutboxEvent, refs: RemoteRefs) -> None:
        """Write one event to Salesforce, idempotently (see the module's docstring)."""
        if event.kind in (EventKind.CONTACT_UPSERT, EventKind.CONTACT_UPDATED):
            self._upsert_contact(event, refs)
        elif event.kind is EventKind.CONVERSATION_LOGGED:
            self._write_child(event, refs, "Task", self.mapping.task_external_id, "WhoId")
        elif event.kind is EventKind.TICKET_OPENED:
            link = None if self.mapping.is_lead else "ContactId"  # a Case has no LeadId
            self._write_child(event, refs, "Case", self.mapping.case_external_id, link)
        else:  # a kind added without an adapter case: parked, visibly
            raise RemotePermanent(f"Salesforce adapter cannot deliver {event.kind}")

    # Records -------------------------------------------------------------------------

    def _person(self, event: OutboxEvent) -> dict[str, Any]:
        person: dict[str, Any] = event.payload.get("contact") or event.payload
        return person

    def _contact_fields(self, person: dict[str, Any]) -> dict[str, Any]:
        m = self.mapping
        first, _, last = " ".join(str(person.get("name") or "").split()).partition(" ")
        fields: dict[str, Any] = {"LastName": (last or first or m.default_last_name)[:80]}
        if last:
            fields["FirstName"] = first[:40]
        for field, name in (("email", "Email"), ("phone", "Phone")):
            if person.get(field):  # never blank out what Salesforce has
                fields[name] = str(person[field]).strip()
        identities = contact_identities(person)
        if m.identity_field and identities:
            fields[m.identity_field] = identities[0][:255]  # the one it was created from
        if m.is_lead:
            fields["Company"] = m.lead_company
        return fields

    def _child_fields(self, event: OutboxEvent, kind: str) -> dict[str, Any]:
        payload, m = event.payload, self.mapping
        marker = f"[rapport:{event.key}]"
        if kind == "Task":
            fields: dict[str, Any] = {
                "Subject": m.task_subject.format(channel=payload.get("channel") or "chat")[:255],
                "Status": m.task_status,
                "Priority": m.task_priority,
                "Type": m.task_type,
                "Description": conversation_text(
                    payload,
                    marker,
                    as_html=False,  # Task.Description is plain text
                    with_intents=m.task_include_intents,
                    max_chars=m.task_max_chars,
                ),
            }
            ended = parse_time(payload.get("ended_at") or payload.get("started_at"))
            if ended is not None:
                fields["ActivityDate"] = ended.date().isoformat()
            return fields
        route = m.route(str(payload.get("category") or "other"))
        reference = str(payload.get("reference") or event.key)
        subject = f"{reference} · {payload.get('subject') or payload.get('category') or ''}"
        fields = {
            "Subject": subject.strip(" ·")[:255],
            "Description": ticket_text(payload, marker)[:32000],
            "Status": route.status,
            "Origin": route.origin,
        }
        if route.priority:
            fields["Priority"] = route.priority
        if m.is_lead:  # no ContactId: the customer's details, as web-to-case has them
            person = self._person(event)
            supplied = {"SuppliedName": person.get("name"), "SuppliedEmail": person.get("email")}
            supplied["SuppliedPhone"] = person.get("phone")
            fields.update({k: str(v)[:80] for k, v in supplied.items() if v})
        return fields

    def _upsert_contact(self, event: OutboxEvent, refs: RemoteRefs) -> None:
        key = f"contact:{event.contact_id}"
        m = self.mapping
        remote_id = self._upsert(
            f"upsert {m.contact_object.lower()}",
            m.contact_object,
            m.contact_external_id,
            external_value(key),
            self._contact_fields(self._person(event)),
            known=refs.get(key),
        )
        refs.put(key, remote_id)

    def _write_child(
        self, event: OutboxEvent, refs: RemoteRefs, kind: str, field: str, link: str | None
    ) -> None:
        """A Task or Case for the event's contact: alone when the contact's Salesforce id
        is stored, else together with the contact in one Composite request."""
        if refs.get(event.key):
            return  # delivered before, its id stored: nothing to do
        contact_key = f"contact:{event.contact_id}"
        parent = refs.get(contact_key)
        fields = self._child_fields(event, kind)
        value = external_value(event.key)
        if parent is not None:
            try:
                alone = {**fields, link: parent} if link else fields
                remote_id = self._upsert(f"upsert {kind.lower()}", kind, field, value, alone)
            except Refused as refused:
                if refused.code not in _STALE_PARENT:
                    raise
            else:
                refs.put(event.key, remote_id)
                return
        m = self.mapping
        contact = (m.contact_object, m.contact_external_id, external_value(contact_key))
        child = (kind, field, value)
        if link:
            fields[link] = "@{refContact.id}"
        ids = self._composite(
            f"upsert {m.contact_object.lower()} and {kind.lower()}",
            [
                ("refContact", *contact, self._contact_fields(self._person(event))),
                ("refChild", *child, fields),
            ],
        )
        refs.put(contact_key, ids["refContact"] or self._find_id(*contact))
        refs.put(event.key, ids["refChild"] or self._find_id(*child))

    # Requests ------------------------------------------------------------------------

    def _path(self, kind: str, field: str, value: str) -> str:
        return f"sobjects/{kind}/{field}/{quote(value, safe='')}"

    def _upsert(
        self,
        what: str,
        kind: str,
        field: str,
        value: str,
        fields: dict[str, Any],
        known: str | None = None,
    ) -> str:
        """Upsert one record; its id (an update answered 204 carries none: the stored one,
        else read back)."""
        result = self._request(what, "PATCH", self._path(kind, field, value), json=fields)
        if isinstance(result, dict) and result.get("id"):
            return str(result["id"])
        return known or self._find_id(kind, field, value)

    def _find_id(self, kind: str, field: str, value: str) -> str:
        found = self._request(
            f"read {kind.lower()}", "GET", self._path(kind, field, value), params={"fields": "Id"}
        )
        if not isinstance(found, dict) or not found.get("Id"):
            raise RemotePermanent(f"Salesforce read {kind.lower()}: no Id in the answer")
        return str(found["Id"])

    def _composite(
        self, what: str, parts: list[tuple[str, str, str, str, dict[str, Any]]]
    ) -> dict[str, str | None]:
        """Upsert ``(referenceId, object, field, value, fields)`` records all or none; each
        referenceId's record id (None for an update answered without a body)."""
        prefix = f"/services/data/v{self.api_version}/"
        body = {
            "allOrNone": True,
            "compositeRequest": [
                {
                    "method": "PATCH",
                    "url": prefix + self._path(kind, field, value),
                    "referenceId": ref,
                    "body": fields,
                }
                for ref, kind, field, value, fields in parts
            ],
        }
        result = self._request(what, "POST", "composite", json=body)
        answers = result.get("compositeResponse") if isinstance(result, dict) else None
        if not isinstance(answers, list):
            raise RemoteRetryable(f"Salesforce {what}: no compositeResponse in the answer")
        ids: dict[str, str | None] = {}
        failed: list[tuple[int, str]] = []
        for answer in answers:
            status, reply = int(answer.get("httpStatusCode") or 0), answer.get("body")
            if status >= 300:
                failed.append((status, error_code(reply)))
            else:
                ids[str(answer.get("referenceId"))] = (
                    str(reply["id"]) if isinstance(reply, dict) and reply.get("id") else None
                )
        if failed:
            # The sub-request that failed, not the ones rolled back because of it.
            status, code = next((f for f in failed if f[1] != "PROCESSING_HALTED"), failed[0])
            raise self._translate(what, status, code)
        return {ref: ids.get(ref) for ref, *_ in parts}

    def _session(self, expired: Salesforce | None = None) -> Salesforce:
        """The signed-in client; with ``expired``, a new one unless another thread has
        already replaced that one (one sign-in for all the workers, under the lock)."""
        with self._client_lock:
            if self._client is None or self._client is expired:
                self._client = None  # a failed sign-in leaves none: the next call tries again
                self._client = self._connect()
            return self._client

    def _request(
        self, what: str, method: str, path: str, expired: Salesforce | None = None, **kwargs: Any
    ) -> Any:
        """One REST call behind the limiter; Salesforce's errors as Remote* errors. On a
        401 a renewable sign-in is done again and the call repeated, once: a 401 means
        Salesforce did nothing, so the repeat cannot write twice."""
        client = self._session(expired)
        try:
            self.limiter.acquire()
        except QuotaSpent as spent:
            raise RemoteRetryable(
                f"Salesforce {what}: this process's API calls for the day are spent "
                "(SALESFORCE_REQUESTS_PER_DAY)",
                spent.seconds,
            ) from None
        try:
            return client.restful(path, method=method, **kwargs)
        except SalesforceError as error:
            if error.status != 401 or not self.renewable or expired is not None:
                raise self._translate(what, error.status, error_code(error.content)) from None
        except requests.RequestException as error:
            # Timeouts and refused connections; the message names no URL, body or token.
            raise RemoteRetryable(
                f"Salesforce unreachable ({what}: {type(error).__name__})"
            ) from None
        return self._request(what, method, path, expired=client, **kwargs)  # the session expired

    def _retry_after(self) -> float | None:
        session = self._client.session if self._client is not None else None
        raw = getattr(getattr(session, "last", None), "retry_after", None)
        try:
            return max(0.0, float(raw)) if raw is not None else None
        except ValueError:
            return None

    def _translate(self, what: str, status: int, code: str) -> Exception:
        """Only the status and Salesforce's errorCode are kept: its messages may quote the
        record's values (an invalid email, a name)."""
        if status in (429, 503) or code == "REQUEST_LIMIT_EXCEEDED":
            retry_after = self._retry_after()
            if status == 429:  # a burst limit: every worker of the process waits it out
                self.limiter.pause(retry_after if retry_after is not None else 1.0)
            return RemoteRetryable(f"Salesforce rate limit ({what}: {status} {code})", retry_after)
        if status == 0 or status >= 500:
            return RemoteRetryable(f"Salesforce failed ({what}: {status} {code})")
        if status == 401:  # fixed by the operator, after which a retry works
            return RemoteRetryable(
                f"Salesforce refused the session ({what}: 401 {code}); check {self.credentials}"
            )
        if status == 403:
            return RemoteRetryable(
                f"Salesforce refused the integration user ({what}: 403 {code}); check its "
                "permissions on the objects and fields in the mapping file"
            )
        return Refused(f"Salesforce refused to {what}: {status} {code}", code)
