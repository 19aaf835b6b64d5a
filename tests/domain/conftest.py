"""The deciders' handler tests on a database of their own.

The API tests' session app runs the background policies (the not-on-track alert follower, the
reminder process) on the shared test database for the whole run; an alert they record on a client
here would land between a test's own appends (seen: a version gap after the eighth identical
measurement, the "no reliable improvement" rule).
"""

from __future__ import annotations

from tests.conftest import own_database

database, app_pool = own_database("alliance_test_domain")
