"""Workbench accounts: trainers and admins, with Argon2id password hashes.

Accounts are created from a terminal (``python -m crm_bridge add-user NAME --role
trainer``); the workbench only checks them. A wrong name and a wrong password fail
alike and take the same time, so a login form cannot tell which accounts exist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from crm_bridge import models
from crm_bridge.db import unit_of_work
from crm_bridge.errors import Conflict, InvalidInput, NotFound

ROLES = ("trainer", "admin")
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{1,79}$")
MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024

_hasher = PasswordHasher()
# Verified against when the name is unknown, so both failures cost one Argon2 check.
_DUMMY_HASH = _hasher.hash("not a password of anyone")


@dataclass(frozen=True)
class WorkbenchAccount:
    """Who is logged in: what the workbench knows of a user (never the hash)."""

    id: int
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        """Admins may do everything a trainer may, and manage accounts."""
        return self.role == "admin"


def validate_new_account(name: str, role: str, password: str) -> None:
    """Raise InvalidInput naming the field when a new account's values are unusable."""
    if not NAME_PATTERN.match(name):
        raise InvalidInput(
            "name", "A user name is 2-80 characters: lower-case letters, digits, '.', '_', '-'."
        )
    if role not in ROLES:
        raise InvalidInput("role", f"The role is one of: {', '.join(ROLES)}.")
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise InvalidInput("password", f"A password has at least {MIN_PASSWORD_CHARS} characters.")


def add_user(factory: sessionmaker, name: str, role: str, password: str) -> WorkbenchAccount:
    """Create an account; Conflict when the name is taken."""
    validate_new_account(name, role, password)
    with unit_of_work(factory) as session:
        taken = session.execute(
            select(models.WorkbenchUser.id).where(models.WorkbenchUser.name == name)
        ).first()
        if taken:
            raise Conflict(f"There is already a user called {name}.")
        user = models.WorkbenchUser(name=name, role=role, password_hash=_hasher.hash(password))
        session.add(user)
        session.flush()
        return WorkbenchAccount(user.id, user.name, user.role)


def set_password(factory: sessionmaker, name: str, password: str) -> None:
    """Replace a user's password (NotFound for an unknown name)."""
    with unit_of_work(factory) as session:
        user = _user(session, name)
        validate_new_account(name, user.role, password)
        user.password_hash = _hasher.hash(password)


def set_disabled(factory: sessionmaker, name: str, disabled: bool) -> None:
    """Lock an account out (or let it back in) without deleting its history."""
    with unit_of_work(factory) as session:
        _user(session, name).disabled = disabled


def authenticate(factory: sessionmaker, name: str, password: str) -> WorkbenchAccount | None:
    """The account when name and password match an enabled user, else None."""
    with unit_of_work(factory) as session:
        user = session.execute(
            select(models.WorkbenchUser).where(models.WorkbenchUser.name == name)
        ).scalar_one_or_none()
        stored = user.password_hash if user is not None else _DUMMY_HASH
        try:
            _hasher.verify(stored, password[:MAX_PASSWORD_CHARS])
        except (VerificationError, InvalidHashError):
            return None
        if user is None or user.disabled:
            return None
        if _hasher.check_needs_rehash(stored):
            user.password_hash = _hasher.hash(password)
        return WorkbenchAccount(user.id, user.name, user.role)


def find_account(factory: sessionmaker, account_id: int) -> WorkbenchAccount | None:
    """An enabled account by id (a session cookie names the id), else None."""
    with unit_of_work(factory) as session:
        user = session.get(models.WorkbenchUser, account_id)
        if user is None or user.disabled:
            return None
        return WorkbenchAccount(user.id, user.name, user.role)


def list_accounts(factory: sessionmaker) -> list[tuple[WorkbenchAccount, bool]]:
    """Every account with whether it is disabled, by name."""
    with unit_of_work(factory) as session:
        rows = session.execute(
            select(models.WorkbenchUser).order_by(models.WorkbenchUser.name)
        ).scalars()
        return [(WorkbenchAccount(u.id, u.name, u.role), bool(u.disabled)) for u in rows]


def _user(session: Session, name: str) -> models.WorkbenchUser:
    user = session.execute(
        select(models.WorkbenchUser).where(models.WorkbenchUser.name == name)
    ).scalar_one_or_none()
    if user is None:
        raise NotFound(f"No user called {name}.")
    return user
