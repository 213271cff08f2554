"""Salesforce's two sign-in endpoints for the fake Salesforce (``salesforce_api.py``),
written from Salesforce's public documentation, checking what Salesforce checks:

- SOAP ``login()``, ``POST /services/Soap/u/<version>``: ``Content-Type: text/xml``, a
  ``SOAPAction`` header, a well-formed envelope with ``<login>`` in the partner namespace,
  its username and password (the security token appended) those of a known user. Answers a
  ``loginResponse`` with ``serverUrl`` and ``sessionId``, or a SOAP fault with HTTP 500
  (``sf:INVALID_LOGIN``; ``soapenv:Client`` for a malformed request).
- The OAuth 2.0 JWT bearer flow, ``POST /services/oauth2/token``: a form with the
  jwt-bearer ``grant_type`` and an RS256 ``assertion`` whose ``iss`` is a connected app's
  consumer key, signature verifies with that app's certificate (public key), ``aud`` is
  the login URL, ``sub`` a user pre-authorised for the app and ``exp`` within the next
  3 minutes. Answers ``{"access_token", "instance_url", ...}`` or 400
  ``{"error", "error_description"}``.

Each success issues a new session id that the REST endpoints accept.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from email.message import Message
from typing import Any
from urllib.parse import parse_qs
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import jwt

SOAP_PATH = re.compile(r"^/services/Soap/u/([0-9]+\.0)$")
TOKEN_PATH = "/services/oauth2/token"
ENVELOPE = "{http://schemas.xmlsoap.org/soap/envelope/}"
PARTNER = "{urn:partner.soap.sforce.com}"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ORG = "00D000000000001"
ANSWER = (
    '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
    'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
    'xmlns="urn:partner.soap.sforce.com" xmlns:sf="urn:fault.partner.soap.sforce.com" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>{}'
    "</soapenv:Body></soapenv:Envelope>"
)
INVALID_LOGIN = "Invalid username, password, security token; or user locked out."


class LoginRefused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def route_of(path: str) -> str | None:
    """``password login`` or ``jwt login`` for a sign-in path, else None."""
    if SOAP_PATH.match(path):
        return "password login"
    return "jwt login" if path == TOKEN_PATH else None


class FakeLogins:
    """Known users and connected apps; ``issue()`` makes a session id the REST API takes."""

    def __init__(self, root_url: str, issue: Callable[[], str]) -> None:
        self.root_url = root_url  # the login URL (aud) and the instance URL, both
        self.passwords: dict[str, str] = {}  # username: password + security token
        self.apps: dict[str, tuple[str, Any]] = {}  # consumer key: (username, public key)
        self._issue = issue

    def add_user(self, username: str, password: str, security_token: str = "") -> None:
        self.passwords[username] = password + security_token

    def add_app(self, consumer_key: str, username: str, public_key: Any) -> None:
        """A connected app with "Use digital signatures" (its certificate's public key),
        ``username`` pre-authorised through a permission set."""
        self.apps[consumer_key] = (username, public_key)

    def answer(
        self, route: str, path: str, headers: Message, raw: bytes
    ) -> tuple[int, bytes, str, dict[str, Any]]:
        """(status, body, content type, what to record: never the password)."""
        if route == "password login":
            return self._soap(path, headers, raw)
        return self._token(headers, raw)

    # SOAP login() ----------------------------------------------------------------------

    def _soap(
        self, path: str, headers: Message, raw: bytes
    ) -> tuple[int, bytes, str, dict[str, Any]]:
        version = SOAP_PATH.match(path).group(1)  # type: ignore[union-attr]
        recorded: dict[str, Any] = {"soap_action": headers.get("SOAPAction")}
        try:
            if not (headers.get("Content-Type") or "").startswith("text/xml"):
                raise LoginRefused(500, "soapenv:Client", "Content-Type must be text/xml")
            if headers.get("SOAPAction") is None:
                raise LoginRefused(500, "soapenv:Client", "No SOAPAction header!")
            username, password = self._credentials(raw)
            recorded["username"] = username
            if self.passwords.get(username) != password:
                raise LoginRefused(500, "sf:INVALID_LOGIN", f"INVALID_LOGIN: {INVALID_LOGIN}")
        except LoginRefused as refused:
            fault = (
                f"<soapenv:Fault><faultcode>{refused.code}</faultcode>"
                f"<faultstring>{escape(refused.message)}</faultstring></soapenv:Fault>"
            )
            return refused.status, ANSWER.format(fault).encode(), "text/xml", recorded
        server = f"{self.root_url}/services/Soap/u/{version}/{ORG}"
        result = (
            f"<loginResponse><result><passwordExpired>false</passwordExpired>"
            f"<sandbox>false</sandbox><serverUrl>{server}</serverUrl>"
            f"<sessionId>{self._issue()}</sessionId><userId>005000000000001AAA</userId>"
            f"<userInfo><userName>{escape(username)}</userName></userInfo></result>"
            "</loginResponse>"
        )
        return 200, ANSWER.format(result).encode(), "text/xml; charset=utf-8", recorded

    @staticmethod
    def _credentials(raw: bytes) -> tuple[str, str]:
        try:
            root = ElementTree.fromstring(raw)  # noqa: S314 (the test's own client's request)
        except ElementTree.ParseError as error:
            raise LoginRefused(500, "soapenv:Client", f"Malformed envelope: {error}") from None
        login = root.find(f"{ENVELOPE}Body/{PARTNER}login")
        if root.tag != f"{ENVELOPE}Envelope" or login is None:
            raise LoginRefused(500, "soapenv:Client", "Expected Envelope/Body/login")
        username, password = login.find(f"{PARTNER}username"), login.find(f"{PARTNER}password")
        if username is None or password is None:
            raise LoginRefused(500, "soapenv:Client", "login needs username and password")
        return username.text or "", password.text or ""

    # OAuth 2.0 JWT bearer --------------------------------------------------------------

    def _token(self, headers: Message, raw: bytes) -> tuple[int, bytes, str, dict[str, Any]]:
        form = {k: v[0] for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()}
        recorded: dict[str, Any] = {"grant_type": form.get("grant_type")}
        try:
            if not (headers.get("Content-Type") or "").startswith(
                "application/x-www-form-urlencoded"
            ):
                raise LoginRefused(400, "invalid_request", "must be a form post")
            if form.get("grant_type") != JWT_GRANT:
                raise LoginRefused(400, "unsupported_grant_type", "grant type not supported")
            claims = self._verified(form.get("assertion") or "")
            recorded.update(claims)
        except LoginRefused as refused:
            body = {"error": refused.code, "error_description": refused.message}
            return refused.status, _json(body), "application/json", recorded
        answer = {
            "access_token": self._issue(),
            "scope": "api",
            "instance_url": self.root_url,
            "id": f"{self.root_url}/id/{ORG}AAA/005000000000001AAA",
            "token_type": "Bearer",
        }
        return 200, _json(answer), "application/json", recorded

    def _verified(self, assertion: str) -> dict[str, Any]:
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
            if jwt.get_unverified_header(assertion).get("alg") != "RS256":
                raise LoginRefused(400, "invalid_grant", "invalid assertion")
        except jwt.InvalidTokenError:
            raise LoginRefused(400, "invalid_grant", "invalid assertion") from None
        app = self.apps.get(str(unverified.get("iss")))
        if app is None:
            raise LoginRefused(400, "invalid_client_id", "client identifier invalid")
        username, public_key = app
        try:
            claims: dict[str, Any] = jwt.decode(
                assertion,
                public_key,
                algorithms=["RS256"],
                options={"verify_aud": False, "verify_exp": False, "require": ["exp"]},
            )
        except jwt.InvalidTokenError:  # signed with another key, or altered
            raise LoginRefused(400, "invalid_grant", "invalid assertion") from None
        if claims.get("aud") != self.root_url:
            raise LoginRefused(400, "invalid_grant", "audience is invalid")
        now = time.time()
        if not isinstance(claims["exp"], int) or not now < claims["exp"] <= now + 180:
            raise LoginRefused(400, "invalid_grant", "expired authorization code")
        if claims.get("sub") != username:
            raise LoginRefused(400, "invalid_grant", "user hasn't approved this consumer")
        return claims


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()
