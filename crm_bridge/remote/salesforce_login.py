"""Signing in to Salesforce by password (SOAP ``login()``) or by the OAuth 2.0 JWT bearer
flow, at ``SALESFORCE_LOGIN_URL`` (https://login.salesforce.com, https://test.salesforce.com
for a sandbox, or the org's My Domain), as Salesforce's public documentation describes them.

Ours rather than simple-salesforce's because its login always goes to
``https://<domain>.salesforce.com``: a My Domain login URL or a local stand-in could not
be used. The adapter (:mod:`crm_bridge.remote.salesforce`) hands the resulting instance URL
and session id to simple-salesforce, and signs in again when the session expires.

Errors: a refusal (wrong credentials, an app not approved, a wrong login URL) is
:class:`SignInRefused`, naming the variables to check; an outage, a 5xx or a timeout is a
plain :class:`RemoteRetryable`. Neither ever carries a password, token, key or session id.
After a refusal the next attempts within :data:`REFUSAL_COOL_DOWN` answer the same refusal
without asking Salesforce: every queued event would otherwise try to sign in, and
repeated failed logins lock the integration user out.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from crm_bridge.errors import SettingsError
from crm_bridge.remote.base import RemoteRetryable
from crm_bridge.settings import CrmSettings, https_or_local

log = logging.getLogger(__name__)

Timeout = float | tuple[float, float]
# The variables to name when Salesforce refuses a sign-in method's credentials.
CREDENTIALS = {
    "token": "SALESFORCE_ACCESS_TOKEN and SALESFORCE_INSTANCE_URL",
    "password": "SALESFORCE_USERNAME, SALESFORCE_PASSWORD, SALESFORCE_SECURITY_TOKEN and "
    "SALESFORCE_LOGIN_URL",
    "jwt": "SALESFORCE_USERNAME, SALESFORCE_CONSUMER_KEY, SALESFORCE_PRIVATE_KEY_FILE and "
    "SALESFORCE_LOGIN_URL",
}
REFUSAL_COOL_DOWN = 600.0  # seconds; Salesforce's default lockout: 10 failures, 15 minutes
JWT_LIFETIME = 180  # seconds; Salesforce accepts an assertion expiring within 3 minutes
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SOAP_LOGIN = """<?xml version="1.0" encoding="utf-8" ?>
<env:Envelope xmlns:xsd="http://www.w3.org/2001/XMLSchema"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xmlns:env="http://schemas.xmlsoap.org/soap/envelope/">
  <env:Body>
    <n1:login xmlns:n1="urn:partner.soap.sforce.com">
      <n1:username>{username}</n1:username>
      <n1:password>{password}</n1:password>
    </n1:login>
  </env:Body>
</env:Envelope>"""
# SOAP fault codes that say "not now" rather than "not these credentials".
_TRANSIENT_FAULTS = {"SERVER_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "UNKNOWN_EXCEPTION"}
# An error_description is quoted only when it cannot hold a username, a key or an id.
_PLAIN_WORDS = re.compile(r"[A-Za-z ,.'_-]{1,120}")


@dataclass(frozen=True)
class SignedIn:
    """A session: the org's URL (scheme and host) and the session id for its REST API."""

    instance_url: str
    session_id: str = field(repr=False)


class SignInRefused(RemoteRetryable):
    """Salesforce refused the credentials (``code``: its fault code or OAuth error). Retryable,
    as a 401 is: the operator fixes the settings or the org, after which a retry works."""

    def __init__(self, message: str, code: str, retry_after: float | None = None) -> None:
        super().__init__(message, retry_after)
        self.code = code


def password_login(
    session: requests.Session,
    login_url: str,
    api_version: str,
    username: str,
    password: str,
    timeout: Timeout,
) -> SignedIn:
    """SOAP ``login()``: ``password`` is the password followed by the security token."""
    body = SOAP_LOGIN.format(username=escape(username), password=escape(password))
    response = _post(
        session,
        f"{login_url}/services/Soap/u/{api_version}",
        timeout,
        data=body.encode("utf-8"),
        headers={"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": "login"},
    )
    values = _soap_values(response.content, {"serverUrl", "sessionId", "faultcode"})
    fault = values.get("faultcode", "").rpartition(":")[2]  # sf:INVALID_LOGIN
    if response.ok and values.get("serverUrl") and values.get("sessionId"):
        return _signed_in("password", values["serverUrl"], values["sessionId"])
    if fault and fault not in _TRANSIENT_FAULTS:  # SOAP faults come with a 500
        raise _refused("password", fault)
    raise _unexpected(response.status_code, fault or "no session in the answer", "password")


def jwt_login(
    session: requests.Session,
    login_url: str,
    consumer_key: str,
    username: str,
    private_key: RSAPrivateKey,
    timeout: Timeout,
    now: Callable[[], float] = time.time,
) -> SignedIn:
    """OAuth 2.0 JWT bearer flow: an RS256 assertion for ``username`` signed with the
    connected app's key, exchanged for an access token."""
    claims = {
        "iss": consumer_key,
        "sub": username,
        "aud": login_url,  # login.salesforce.com, test.salesforce.com or the My Domain
        "exp": int(now()) + JWT_LIFETIME,
    }
    assertion = jwt.encode(claims, private_key, algorithm="RS256")
    response = _post(
        session,
        f"{login_url}/services/oauth2/token",
        timeout,
        data={"grant_type": JWT_GRANT, "assertion": assertion},
        headers={"Accept": "application/json"},
    )
    try:
        answer = response.json()
    except ValueError:
        answer = None
    answer = answer if isinstance(answer, dict) else {}
    if response.ok and answer.get("access_token") and answer.get("instance_url"):
        return _signed_in("jwt", str(answer["instance_url"]), str(answer["access_token"]))
    error = str(answer.get("error") or "")
    if error.isidentifier() and response.status_code < 500:
        description = str(answer.get("error_description") or "")
        said = f": {description}" if _PLAIN_WORDS.fullmatch(description) else ""
        raise _refused("jwt", error, said)
    raise _unexpected(response.status_code, error or "no access token in the answer", "jwt")


class SignIn:
    """The sign-in the settings choose, as a callable the adapter calls with its requests
    session: for the first session and again whenever one expires."""

    def __init__(
        self,
        method: str,
        attempt: Callable[[requests.Session], SignedIn],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.method = method  # token, password or jwt
        self.credentials = CREDENTIALS[method]
        self.renewable = method != "token"  # a given session id cannot be renewed by us
        self._attempt = attempt
        self._clock = clock
        self._refused: tuple[float, SignInRefused] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: CrmSettings, timeout: Timeout) -> SignIn:
        """The sign-in for these (validated) settings; the JWT key is read here, at start-up,
        so that a missing or unreadable key stops the worker naming the variable."""
        method = settings.salesforce_login()
        login_url = settings.salesforce_login_url.rstrip("/")
        username = settings.salesforce_username
        if method == "password":
            secret = settings.salesforce_password + settings.salesforce_security_token
            version = settings.salesforce_api_version
            return cls(
                method,
                lambda s: password_login(s, login_url, version, username, secret, timeout),
            )
        if method == "jwt":
            key = read_private_key(settings.salesforce_private_key_file)
            consumer_key = settings.salesforce_consumer_key
            return cls(
                method, lambda s: jwt_login(s, login_url, consumer_key, username, key, timeout)
            )
        given = SignedIn(
            settings.salesforce_instance_url.rstrip("/"), settings.salesforce_access_token
        )
        return cls(method, lambda _session: given)

    def __call__(self, session: requests.Session) -> SignedIn:
        """A session, or :class:`SignInRefused` / :class:`RemoteRetryable`."""
        with self._lock:
            if self._refused is not None:
                since, refusal = self._refused
                left = REFUSAL_COOL_DOWN - (self._clock() - since)
                if left > 0:  # not asked again yet: see the module's docstring
                    raise SignInRefused(str(refusal), refusal.code, left)
                self._refused = None
            try:
                return self._attempt(session)
            except SignInRefused as refusal:
                self._refused = (self._clock(), refusal)
                refusal.retry_after = REFUSAL_COOL_DOWN
                raise


def read_private_key(path: str) -> RSAPrivateKey:
    """The connected app's RSA private key from an unencrypted PEM file."""
    try:
        with open(path, "rb") as file:
            key = load_pem_private_key(file.read(), password=None)
    except OSError as error:
        raise SettingsError(
            f"SALESFORCE_PRIVATE_KEY_FILE cannot be read ({error.strerror}): {path}"
        ) from None
    except (ValueError, TypeError):  # not PEM, or encrypted: the library's text says which
        raise SettingsError(
            f"SALESFORCE_PRIVATE_KEY_FILE is not an unencrypted PEM private key: {path}"
        ) from None
    if not isinstance(key, RSAPrivateKey):
        raise SettingsError(f"SALESFORCE_PRIVATE_KEY_FILE must hold an RSA key (RS256): {path}")
    return key


def _post(session: requests.Session, url: str, timeout: Timeout, **kwargs: Any) -> Any:
    try:
        # No redirects: the credentials go to the configured login URL and nowhere else.
        return session.post(url, timeout=timeout, allow_redirects=False, **kwargs)
    except requests.RequestException as error:  # the message names no URL or body
        raise RemoteRetryable(f"Salesforce unreachable (sign in: {type(error).__name__})") from None


def _soap_values(content: bytes, names: set[str]) -> dict[str, str]:
    """The text of the first element of each local name in a SOAP answer; {} when it is
    not XML. A SOAP message never has a DTD, so one is refused before parsing."""
    if b"<!DOCTYPE" in content.upper() or b"<!ENTITY" in content.upper():
        return {}
    try:
        root = ElementTree.fromstring(content)  # noqa: S314 (no DTD, see above)
    except ElementTree.ParseError:
        return {}
    values: dict[str, str] = {}
    for element in root.iter():
        name = element.tag.rpartition("}")[2]
        if name in names and name not in values:
            values[name] = (element.text or "").strip()
    return values


def _signed_in(method: str, url: str, session_id: str) -> SignedIn:
    parts = urlsplit(url)
    instance_url = f"{parts.scheme}://{parts.netloc}"  # serverUrl has the SOAP path too
    if not https_or_local(instance_url):  # the session id would travel in clear
        raise _refused(method, "INSECURE_INSTANCE_URL")
    log.info("Salesforce: signed in (%s) to %s", method, instance_url)
    return SignedIn(instance_url, session_id)


def _refused(method: str, code: str, said: str = "") -> SignInRefused:
    code = code if code.isidentifier() else "UNKNOWN"
    return SignInRefused(
        f"Salesforce refused to sign in ({code}{said}); check {CREDENTIALS[method]}", code
    )


def _unexpected(status: int, what: str, method: str) -> RemoteRetryable:
    """Neither a session nor a refusal: a 5xx or an odd answer is an outage (retried); a
    4xx or a redirect means the login URL is not a Salesforce login endpoint."""
    what = what if what.replace(" ", "").isidentifier() else "UNKNOWN"
    if status >= 500 or 200 <= status < 300:
        return RemoteRetryable(f"Salesforce sign-in failed ({method}: {status} {what})")
    return _refused(method, f"HTTP_{status}")
