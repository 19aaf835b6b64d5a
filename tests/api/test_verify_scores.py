"""``alliance verify --scores`` re-derives every stored measurement and names each difference:
total, subscales, band and risk items (observed failure 2: it compared totals only)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from alliance.core.client import MeasurementRecorded, ReportedBy, client_stream
from alliance.core.events.envelope import NewEvent
from alliance.core.identity import Role
from tests.api.support import phq9
from tests.api.test_compliance import alliance


async def test_verify_scores_names_band_and_risk_differences(api: Any, clinic: Any, database: Any) -> None:
    client_id = await api.enrolled_client(clinic)
    me = api.token(clinic.tenant, "client", client_id)
    observed = datetime.now(UTC) - timedelta(hours=1)
    r = await api.http.post(f"/clients/{client_id}/measurements", headers=me, json={
        "instrument_id": "phq9", "answers": phq9(8), "observed_at": observed.isoformat()})
    assert r.status_code == 201, r.text
    # given: a measurement stored without Alliance's scoring (as a caller once could, through the
    # domain API): all answers at 3 with a matching total but "minimal" and no risk item or flag
    definition = api.services.instruments.get("phq9")
    bogus_id = uuid.uuid4()
    stream = client_stream(client_id)
    version = await api.services.store.stream_version(stream)
    bogus = MeasurementRecorded(
        measurement_id=bogus_id, instrument_id="phq9", instrument_version=definition.version,
        fingerprint=definition.fingerprint, answers={f"item{n}": 3 for n in range(1, 10)}, scores={"total": 27.0},
        band="minimal", reported_by=ReportedBy(informant="self", channel="app"), observed_at=observed,
        risk_items=())
    await api.services.store.append(stream, [NewEvent(
        event_id=uuid.uuid4(), payload=bogus, tenant_id=clinic.tenant, subject_id=client_id, actor_id=client_id,
        actor_role=Role.CLIENT, occurred_at=datetime.now(UTC))], version)
    # when
    code, output = await alliance(api, database, "verify", "--scores")
    # then: the difference is named, each part of it
    assert code == 1, output
    lines = [line for line in output.splitlines() if str(bogus_id) in line]
    assert any("band stored 'minimal', now 'severe'" in line for line in lines), output
    assert any("risk items stored [], now ['item9']" in line for line in lines), output
    assert any("no risk flag was raised" in line for line in lines), output
    assert not any("total" in line for line in lines), output  # the total itself was right
    assert "different" in output
