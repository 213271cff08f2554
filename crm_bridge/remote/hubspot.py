"""HubSpot as the remote CRM: contacts, a Note per conversation, Tickets.

Built on the official ``hubspot-api-client``. Every request first waits for the
process-wide :mod:`rate limiter <crm_bridge.remote.ratelimit>` (HubSpot: about 190
requests per 10 s per private app, 4 per second on search) and has a timeout; urllib3's own
retries are off, so that a retry never slips past the limiter and never repeats a create:
the outbox retries the whole event instead.

Idempotency. The remote id of each record we create is stored (``refs``) under the local
key (``contact:3``, ``interaction:42``, ``ticket:7``); a redelivered event whose key is
stored does nothing. For the window between HubSpot's answer and ``refs.put`` (a crash), the
record carries the key: a Note's body and a Ticket's description end with the marker
``[rapport:<key>]``, and a redelivery (attempt 2 on) first searches by standard properties
we set ourselves (a Note's ``hs_timestamp``, a Ticket's ``subject`` and pipeline) and
checks the marker, so no custom property is needed on notes or tickets.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any, TypeVar

import hubspot
import hubspot.crm.contacts as contacts_pkg
import hubspot.crm.objects.notes as notes_pkg
import hubspot.crm.tickets as tickets_pkg
import urllib3

from crm_bridge.errors import SettingsError
from crm_bridge.remote.base import (
    EventKind,
    OutboxEvent,
    RemotePermanent,
    RemoteRefs,
    RemoteRetryable,
)
from crm_bridge.remote.mapping import HubSpotMapping
from crm_bridge.remote.ratelimit import RateLimiter, hubspot_limiter, shared_limiter
from crm_bridge.remote.render import (
    contact_identities,
    conversation_text,
    parse_time,
    ticket_text,
)
from crm_bridge.settings import CrmSettings

# The client logs whole response bodies (customers' names, emails, transcripts) at DEBUG.
logging.getLogger("hubspot").setLevel(logging.INFO)

# HubSpot-defined association type ids (CRM v4 associations).
NOTE_TO_CONTACT = 202
TICKET_TO_CONTACT = 16
TIMEOUT = (5.0, 20.0)  # seconds: connect, read
SEARCH_PAGE = 20
SEARCH_MAX_PAGES = 10  # a marker search never walks an unbounded result set
T = TypeVar("T")
_API_ERRORS = (contacts_pkg.ApiException, notes_pkg.ApiException, tickets_pkg.ApiException)


class HubSpotCrm:
    """Delivers outbox events to HubSpot (CRM v3 objects)."""

    name = "hubspot"

    def __init__(
        self,
        client: hubspot.HubSpot,
        mapping: HubSpotMapping,
        limiter: RateLimiter,
        timeout: float | tuple[float, float] = TIMEOUT,
    ) -> None:
        self.mapping = mapping
        self.limiter = limiter
        self.timeout = timeout
        # Built once: each access to client.crm... makes a new ApiClient and pool.
        self._contacts = _Objects(client.crm.contacts, contacts_pkg, self)
        self._notes = _Objects(client.crm.objects.notes, notes_pkg, self)
        self._tickets = _Objects(client.crm.tickets, tickets_pkg, self)

    @classmethod
    def from_settings(
        cls, settings: CrmSettings, timeout: float | tuple[float, float] = TIMEOUT
    ) -> HubSpotCrm:
        """The adapter for these settings; the mapping file is checked here (start-up)."""
        if not settings.hubspot_access_token:
            raise SettingsError("HUBSPOT_ACCESS_TOKEN must be set (a private app's token)")
        mapping = HubSpotMapping.load(settings.hubspot_mapping)
        client = hubspot.HubSpot(
            access_token=settings.hubspot_access_token,
            host=settings.hubspot_api_base_url.rstrip("/"),
            retry=False,  # no hidden retries: see the module's docstring
        )
        per_10s = settings.hubspot_requests_per_10s
        limiter = shared_limiter("hubspot", lambda: hubspot_limiter(per_10s))
        return cls(client, mapping, limiter, timeout)

    def deliver(self, event: OutboxEvent, refs: RemoteRefs) -> None:
        """Write one event to HubSpot, idempotently (see the module's docstring)."""
        if event.kind is EventKind.CONTACT_UPSERT:
            self._upsert_contact(
                event.contact_id, event.payload.get("contact", event.payload), refs
            )
        elif event.kind is EventKind.CONTACT_UPDATED:
            self._update_contact(event, refs)
        elif event.kind is EventKind.CONVERSATION_LOGGED:
            self._log_conversation(event, refs)
        elif event.kind is EventKind.TICKET_OPENED:
            self._open_ticket(event, refs)
        else:  # a kind added without an adapter case: parked, visibly
            raise RemotePermanent(f"HubSpot adapter cannot deliver {event.kind}")

    # Contacts ------------------------------------------------------------------------

    def _contact_id(self, event: OutboxEvent, refs: RemoteRefs) -> str:
        """The contact's HubSpot id: stored, else found or created from the payload."""
        stored = refs.get(f"contact:{event.contact_id}")
        if stored:
            return stored
        return self._upsert_contact(event.contact_id, event.payload.get("contact") or {}, refs)

    def _upsert_contact(self, contact_id: int, person: dict[str, Any], refs: RemoteRefs) -> str:
        key = f"contact:{contact_id}"
        stored = refs.get(key)
        if stored:
            # Still there? A contact merged in HubSpot answers under the surviving id.
            found = self._contacts.call("get contact", "get_by_id", stored, _not_found=None)
            if found is not None:
                if str(found.id) != stored:
                    refs.put(key, str(found.id))
                return str(found.id)
        remote_id = self._find_contact(person) or self._create_contact(person)
        refs.put(key, remote_id)
        return remote_id

    def _find_contact(self, person: dict[str, Any]) -> str | None:
        m = self.mapping
        email = (person.get("email") or "").strip().lower()
        phone = (person.get("phone") or "").strip()
        identities = contact_identities(person)[:100]  # HubSpot's cap on IN values
        groups: list[tuple[str, str, Any]] = []
        if email:
            groups.append((m.email_property, "EQ", email))
        if phone:
            groups.append((m.phone_property, "EQ", phone))
        if identities:
            groups.append((m.identity_property, "IN", identities))
        if not groups:
            return None
        wanted = [m.email_property, m.phone_property, m.identity_property]
        found = list(self._contacts.search(groups, wanted))
        # One search (OR of the groups), then HubSpot's order of trust: email, phone, identity.
        for prop, _, value in groups:
            for contact in found:
                have = ((contact.properties or {}).get(prop) or "").lower()
                if have in value if isinstance(value, list) else have == value.lower():
                    self._complete_contact(contact, person)
                    return str(contact.id)
        return None

    def _complete_contact(self, contact: Any, person: dict[str, Any]) -> None:
        """Fill the found contact's empty email, phone and identity; never overwrite."""
        have = contact.properties or {}
        wanted = self._contact_properties(person, with_name=False)
        missing = {k: v for k, v in wanted.items() if v and not have.get(k)}
        if missing:
            self._contacts.update("update contact", contact.id, missing)

    def _create_contact(self, person: dict[str, Any]) -> str:
        properties = self._contact_properties(person, with_name=True)
        if not properties:
            raise RemotePermanent("HubSpot contact not created: no email, phone or identity")
        return str(self._contacts.create("create contact", properties).id)

    def _contact_properties(self, person: dict[str, Any], with_name: bool) -> dict[str, str]:
        m = self.mapping
        identities = contact_identities(person)
        properties = {
            m.email_property: (person.get("email") or "").strip(),
            m.phone_property: (person.get("phone") or "").strip(),
            # The first identity: the one the contact was created from.
            m.identity_property: identities[0] if identities else "",
        }
        if with_name:
            first, _, last = (person.get("name") or "").strip().partition(" ")
            properties[m.first_name_property] = first
            properties[m.last_name_property] = last.strip()
        return {k: v for k, v in properties.items() if v}

    def _update_contact(self, event: OutboxEvent, refs: RemoteRefs) -> None:
        remote_id = self._contact_id(event, refs)
        person = event.payload.get("contact") or event.payload
        changes = {
            prop: str(person[field]).strip()
            for field, prop in (
                ("email", self.mapping.email_property),
                ("phone", self.mapping.phone_property),
            )
            if person.get(field)
        }
        if changes:  # a PATCH sets the same values again on a redelivery: idempotent
            self._contacts.update("update contact", remote_id, changes)

    # Notes and tickets ---------------------------------------------------------------

    def _log_conversation(self, event: OutboxEvent, refs: RemoteRefs) -> None:
        if refs.get(event.key):
            return
        contact = self._contact_id(event, refs)
        payload = event.payload
        when = _epoch_ms(payload.get("ended_at") or payload.get("started_at"))
        marker = f"[rapport:{event.key}]"
        remote_id = None
        if _may_exist(event):
            filters = [("hs_timestamp", "EQ", when)]
            remote_id = self._notes.find_marked(filters, "hs_note_body", marker)
        if remote_id is None:
            properties = {
                "hs_timestamp": when,
                "hs_note_body": conversation_text(
                    payload,
                    marker,
                    as_html=self.mapping.note_format == "html",
                    with_intents=self.mapping.note_include_intents,
                    max_chars=self.mapping.note_max_chars,
                    markup=True,  # HubSpot shows a note body as HTML
                ),
            }
            remote_id = self._notes.create("create note", properties, contact, NOTE_TO_CONTACT).id
        refs.put(event.key, str(remote_id))

    def _open_ticket(self, event: OutboxEvent, refs: RemoteRefs) -> None:
        if refs.get(event.key):
            return
        contact = self._contact_id(event, refs)
        payload = event.payload
        route = self.mapping.route(str(payload.get("category") or "other"))
        reference = str(payload.get("reference") or event.key)
        subject = f"{reference} · {payload.get('subject') or payload.get('category') or ''}"
        subject = subject.strip(" ·")[:250]
        marker = f"[rapport:{event.key}]"
        remote_id = None
        if _may_exist(event):
            filters = [("subject", "EQ", subject), ("hs_pipeline", "EQ", route.pipeline)]
            remote_id = self._tickets.find_marked(filters, "content", marker)
        if remote_id is None:
            properties = {
                "subject": subject,
                "content": ticket_text(payload, marker),
                "hs_pipeline": route.pipeline,
                "hs_pipeline_stage": route.stage,
            }
            if route.priority:
                properties["hs_ticket_priority"] = route.priority
            remote_id = self._tickets.create(
                "create ticket", properties, contact, TICKET_TO_CONTACT
            ).id
        refs.put(event.key, str(remote_id))


class _Objects:
    """One HubSpot object type's basic and search APIs, behind the limiter and timeout."""

    def __init__(self, discovery: Any, package: ModuleType, crm: HubSpotCrm) -> None:
        self.basic = discovery.basic_api
        self.searching = discovery.search_api
        self.models = package.models
        self.crm = crm

    def call(self, what: str, method: str, *args: Any, _not_found: Any = ..., **kw: Any) -> Any:
        """``basic_api.method(*args)``, counted and timed; HTTP errors as Remote* errors."""
        return self._request(
            what, "request", getattr(self.basic, method), *args, _nf=_not_found, **kw
        )

    def create(
        self, what: str, properties: dict[str, str], to: str | None = None, type_id: int = 0
    ) -> Any:
        """Create an object, associated inline with contact ``to`` when given."""
        m = self.models
        associations = []
        if to is not None:
            spec = m.AssociationSpec(
                association_category="HUBSPOT_DEFINED", association_type_id=type_id
            )
            associations = [m.PublicAssociationsForObject(to=m.PublicObjectId(id=to), types=[spec])]
        body = m.SimplePublicObjectInputForCreate(properties=properties, associations=associations)
        return self.call(what, "create", body)

    def update(self, what: str, object_id: str, properties: dict[str, str]) -> Any:
        """PATCH some properties of an object."""
        return self.call(
            what, "update", object_id, self.models.SimplePublicObjectInput(properties=properties)
        )

    def search(
        self, groups: list[tuple[str, str, Any]], properties: list[str], all_in_one: bool = False
    ) -> Iterator[Any]:
        """Objects matching any of ``groups`` (one filter each; or all filters ANDed in one group
        with ``all_in_one``), following ``after`` paging up to SEARCH_MAX_PAGES pages."""
        m = self.models
        filters = [
            m.Filter(
                property_name=p,
                operator=op,
                **({"values": v} if isinstance(v, list) else {"value": v}),
            )
            for p, op, v in groups
        ]
        filter_groups = (
            [m.FilterGroup(filters=filters)]
            if all_in_one
            else [m.FilterGroup(filters=[f]) for f in filters]
        )
        after = None
        for _ in range(SEARCH_MAX_PAGES):
            request = m.PublicObjectSearchRequest(
                filter_groups=filter_groups, properties=properties, limit=SEARCH_PAGE, after=after
            )
            page = self._request("search", "search", self.searching.do_search, request)
            yield from page.results or []
            after = page.paging.next.after if page.paging and page.paging.next else None
            if not after:
                return

    def find_marked(
        self, filters: list[tuple[str, str, Any]], text_property: str, marker: str
    ) -> str | None:
        """The id of an object matching all ``filters`` whose ``text_property`` has ``marker``."""
        for found in self.search(filters, [text_property], all_in_one=True):
            if marker in ((found.properties or {}).get(text_property) or ""):
                return str(found.id)
        return None

    def _request(
        self, what: str, kind: str, method: Callable[..., T], *args: Any, _nf: Any = ..., **kw: Any
    ) -> T:
        self.crm.limiter.acquire(kind)
        try:
            return method(*args, _request_timeout=self.crm.timeout, **kw)
        except _API_ERRORS as error:
            if error.status == 404 and _nf is not ...:
                return _nf  # a 404 the caller expects: the record is gone
            raise self._translate(what, error) from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            # Timeouts and refused connections; the message names no URL, body or token.
            raise RemoteRetryable(f"HubSpot unreachable ({what}: {type(error).__name__})") from None
        except ValueError as error:  # the client's own checks of a model's required fields
            raise RemotePermanent(
                f"HubSpot {what}: invalid request ({type(error).__name__})"
            ) from None

    def _translate(self, what: str, error: Any) -> Exception:
        status = int(error.status or 0)
        category = _category(error.body)
        if status == 429:
            retry_after = _retry_after(error.headers)
            self.crm.limiter.pause(retry_after if retry_after is not None else 1.0)
            return RemoteRetryable(f"HubSpot rate limit ({what}: 429 {category})", retry_after)
        if status == 0 or status >= 500:
            return RemoteRetryable(f"HubSpot failed ({what}: {status} {category})")
        if status in (401, 403):
            # A token or scope problem: fixed by the operator, after which a retry works.
            return RemoteRetryable(
                f"HubSpot refused the access token ({what}: {status} {category}); "
                "check HUBSPOT_ACCESS_TOKEN and the app's scopes"
            )
        # 400 VALIDATION_ERROR, 404 OBJECT_NOT_FOUND, 409 CONFLICT...: the body may quote
        # personal data, so only HubSpot's category is kept.
        return RemotePermanent(f"HubSpot refused to {what}: {status} {category}")


def _may_exist(event: OutboxEvent) -> bool:
    """Whether an earlier delivery of this event may have written its record remotely.

    The outbox counts an attempt when it leases an event, before ``deliver``: on attempt 1
    nothing can exist yet, so only later attempts (and callers that do not count: 0) pay
    for the marker search, which HubSpot allows only 4 times a second.
    """
    return event.attempts != 1


def _category(body: Any) -> str:
    try:
        parsed = json.loads(body) if body else {}
    except (ValueError, TypeError):
        return "UNKNOWN"
    category = parsed.get("category") if isinstance(parsed, dict) else None
    return category if isinstance(category, str) and category.isidentifier() else "UNKNOWN"


def _retry_after(headers: Any) -> float | None:
    raw = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None


def _epoch_ms(value: Any) -> str:
    """A payload time as HubSpot's epoch milliseconds (text)."""
    moment = parse_time(value)
    if moment is None:
        raise RemotePermanent("HubSpot note not created: the conversation has no time")
    return str(int(moment.timestamp() * 1000))
