"""The store's metadata: every component's tables, as the components declare them (migrations, tests)."""

from __future__ import annotations

import importlib

from sqlalchemy import MetaData

from powerx_governance.components import COMPONENTS
from powerx_governance.db import locks  # noqa: F401 - the named leases every component may take
from powerx_governance.db.base import Base


def _load_tables() -> MetaData:
    for component in COMPONENTS:
        for module in component.tables:
            importlib.import_module(module)
    return Base.metadata


metadata = _load_tables()
