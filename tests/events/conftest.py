"""The event store's own tests run in a database of their own.

They append events of test-only types and rewrite stored events behind the trigger's back;
the projection runners of other suites follow every event of their database with the
domain's codec, so these must not share it.
"""

from __future__ import annotations

from tests.conftest import own_database

database, app_pool = own_database("alliance_test_store")
