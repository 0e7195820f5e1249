"""Values that live exactly as long as a session's current transaction.

Used for what one transaction has already done (deliveries batched, subscribers woken), so a
second call in the same transaction builds on the first and a new transaction starts afresh.
Kept here, by transaction object, rather than in `session.info`: nothing rides on the session.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar
from weakref import WeakKeyDictionary

from sqlalchemy.orm import Session, SessionTransaction

T = TypeVar("T")


class PerTransaction(Generic[T]):
    """One `T` per open transaction, made on first use and dropped with the transaction."""

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._held: WeakKeyDictionary[SessionTransaction, T] = WeakKeyDictionary()

    def of(self, session: Session) -> T:
        session.connection()  # begin the transaction if the caller has not yet
        current = session.get_transaction()
        if current is None:  # pragma: no cover - connection() always begins one
            raise RuntimeError("no transaction")
        found = self._held.get(current)
        if found is None:
            found = self._held[current] = self._make()
        return found
