"""ALLIANCE_REPLICA_URL and ALLIANCE_REPLICA_MAX_LAG_SECONDS: defaults, and one line for a bad value."""

from __future__ import annotations

import pytest

from alliance.core.errors import ConfigurationError
from alliance.core.settings import load_settings


def test_no_replica_by_default_and_a_five_second_bound():
    settings = load_settings({})
    assert settings.replica_url is None and settings.replica_max_lag_seconds == 5.0
    named = load_settings({"ALLIANCE_REPLICA_URL": "postgresql://standby.example:5432/alliance",
                           "ALLIANCE_REPLICA_MAX_LAG_SECONDS": "2.5"})
    assert named.replica_url == "postgresql://standby.example:5432/alliance"
    assert named.replica_max_lag_seconds == 2.5


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("ALLIANCE_REPLICA_URL", "http://standby:5432/alliance", "a URL starting postgresql:// or postgres://"),
    ("ALLIANCE_REPLICA_MAX_LAG_SECONDS", "0", "a number of seconds greater than 0"),
    ("ALLIANCE_REPLICA_MAX_LAG_SECONDS", "soon", "a number of seconds greater than 0"),
])
def test_a_bad_value_is_one_line_naming_the_variable(name, value, expected):
    with pytest.raises(ConfigurationError) as caught:
        load_settings({name: value})
    message = str(caught.value)
    assert message.startswith(name) and expected in message and "\n" not in message
    if name == "ALLIANCE_REPLICA_URL":  # a DSN may carry a password: never repeated
        assert value not in message
