"""Engines, sessions and the one place where database failures become CRM errors."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from crm_bridge.errors import CrmUnavailable, RapportError

SQLITE_BUSY_TIMEOUT_MS = 5000
CONNECT_TIMEOUT_SECONDS = 5
# While a customer waits for an answer (the action server), a CRM request that takes
# longer than this fails and the customer is told, with a person offered (issue #19).
CUSTOMER_WAIT_TIMEOUT_SECONDS = 2


@functools.lru_cache(maxsize=16)
def get_engine(url: str) -> Engine:
    """A process-wide engine per URL (engines are pools: build each once)."""
    from sqlalchemy import create_engine

    parsed = make_url(url)
    kwargs: dict[str, Any] = {"future": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            from pathlib import Path

            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    else:
        kwargs["pool_pre_ping"] = True
        if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
            kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    engine = create_engine(url, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _configure_sqlite)
    return engine


def with_customer_timeouts(url: str, seconds: int = CUSTOMER_WAIT_TIMEOUT_SECONDS) -> str:
    """``url`` for requests made while a customer waits: on PostgreSQL, connecting and each
    statement (a lock wait included) give up after ``seconds``. SQLite keeps its busy
    timeout, because there the wait is the other local process's write, not an outage."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return url
    millis = seconds * 1000
    query = {
        **parsed.query,
        "connect_timeout": str(seconds),
        "options": f"-c statement_timeout={millis} -c lock_timeout={millis}",
    }
    return parsed.set(query=query).render_as_string(hide_password=False)


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # The Rasa server (event log) and the action server (tickets) are two processes
    # writing one file: WAL lets readers proceed, busy_timeout makes writers wait.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@functools.lru_cache(maxsize=16)
def session_factory(url: str) -> sessionmaker:
    """The session factory for a URL (``future=True`` sessions, 2.0 style)."""
    return sessionmaker(bind=get_engine(url), future=True, expire_on_commit=False)


def is_unavailable(error: BaseException) -> bool:
    """Does this database error mean "cannot reach / use the database" (worth retrying)?"""
    if isinstance(error, OperationalError):
        return True
    return isinstance(error, DBAPIError) and bool(error.connection_invalidated)


@contextmanager
def unit_of_work(factory: sessionmaker) -> Iterator[Session]:
    """A session that commits when the block succeeds and rolls back when it fails.

    Database failures leave as :class:`CrmUnavailable` (connectivity) or
    :class:`RapportError`; the backend's message is kept as the cause, never in the text.
    """
    session: Session = factory()
    try:
        yield session
        session.commit()
    except RapportError:
        session.rollback()
        raise
    except SQLAlchemyError as error:
        _safe_rollback(session)
        if is_unavailable(error):
            raise CrmUnavailable("The CRM database is unavailable.") from error
        raise RapportError("The CRM could not complete the operation.") from error
    except BaseException:
        _safe_rollback(session)
        raise
    finally:
        session.close()


def _safe_rollback(session: Session) -> None:
    # When the connection is already gone there is nothing left to undo.
    with suppress(SQLAlchemyError):
        session.rollback()
