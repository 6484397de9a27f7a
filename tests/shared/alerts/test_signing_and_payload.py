"""The pure parts of alerts (issue 17): Standard Webhooks signatures against the specification's published test
vector, the signing secret's checks and its creation on first use, and each kind's words."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.alerts.payload import alert_body, alert_text
from shared.alerts.signing import SigningSecretUnusable, key_of, new_signing_secret, signature, signing_key
from shared.control.alerts_outbox import KINDS, alert_id_of, new_alert
from shared.secrets.cache import CachedSecrets
from shared.secrets.local_store import LocalSecretStore
from shared.secrets.names import ALERT_SIGNING_SECRET

# Published with the Standard Webhooks specification (and tested by its libraries).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_signature_is_the_standard_webhooks_test_vector() -> None:
    assert signature(key_of(VECTOR_SECRET), VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE
    assert signature(key_of(VECTOR_SECRET), VECTOR_ID, VECTOR_TIMESTAMP + 1, VECTOR_BODY) != VECTOR_SIGNATURE


@pytest.mark.parametrize(("secret", "words"), [
    ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "does not start with 'whsec_'"),
    ("whsec_not base64!", "is not base64"),
    ("whsec_" + base64.b64encode(b"short").decode(), "holds 5 bytes"),
    ("whsec_" + base64.b64encode(bytes(65)).decode(), "holds 65 bytes"),
])
def test_an_unusable_signing_secret_is_refused_without_quoting_it(secret: str, words: str) -> None:
    with pytest.raises(SigningSecretUnusable, match=words) as refused:
        key_of(secret)
    assert secret not in str(refused.value) and ALERT_SIGNING_SECRET in str(refused.value)


def test_a_new_signing_secret_is_whsec_and_32_random_bytes() -> None:
    first, second = new_signing_secret(), new_signing_secret()
    assert len(key_of(first)) == 32 and first != second


def test_the_signing_secret_is_created_once_in_the_secret_store(tmp_path: Path) -> None:
    store = LocalSecretStore(tmp_path / "secrets.json")
    key = signing_key(CachedSecrets(store, 300))
    assert key_of(store.get_secret(ALERT_SIGNING_SECRET)) == key
    assert signing_key(CachedSecrets(store, 300)) == key  # another process: the same secret, not a new one


def test_an_operators_own_signing_secret_is_used(tmp_path: Path) -> None:
    store = LocalSecretStore(tmp_path / "secrets.json")
    store.set_secret(ALERT_SIGNING_SECRET, VECTOR_SECRET)
    assert signing_key(CachedSecrets(store, 300)) == key_of(VECTOR_SECRET)


FACTS = {
    "batch_failed": {"batch_id": "b1", "run": "b1", "error_code": "sas_expired", "message": "the SAS token expired"},
    "paused": {"by": "auto", "reason": "paused after 3 consecutive failed export runs", "failed_runs": 3,
               "paused_at": "2026-12-01T05:00:00+00:00"},
    "sas_expiring": {"expiry": "2026-12-03T00:00Z", "days_left": 1.8},
    "sas_expired": {"expiry": "2026-11-30T00:00Z"},
    "recovered": {"batch_id": "b2", "failed_runs": 4, "failing_since": "2026-12-01T01:00:00Z"},
}
WORDS = {
    "batch_failed": ["'acme' failed", "b1", "sas_expired", "the SAS token expired.", "/api/batches/b1/retry"],
    "paused": ["'acme' was paused automatically", "3 consecutive", "/api/destinations/acme/resume"],
    "sas_expiring": ["expires on 2026-12-03T00:00Z", "1.8 days", "PUT"],
    "sas_expired": ["expired on 2026-11-30T00:00Z", "PUT"],
    "recovered": ["'acme' recovered", "b2", "4 failed export run(s)"],
}


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_says_what_happened_and_what_to_do(kind: str) -> None:
    alert = new_alert(kind, "acme", datetime(2026, 12, 1, 5, tzinfo=UTC), FACTS[kind])  # type: ignore[arg-type]
    text = alert_text(alert)
    for words in WORDS[kind]:
        assert words in text, (kind, words, text)
    assert "None" not in text
    body = json.loads(alert_body(alert))
    assert body["text"] == text and body["kind"] == kind and body["type"] == f"export.destination.{kind}"
    assert body["destination_id"] == "acme" and body["data"] == FACTS[kind] and body["day"] == "2026-12-01"
    assert body["alert_id"] == alert_id_of("acme", "2026-12-01", kind)


def test_an_alert_id_is_one_per_destination_day_and_kind() -> None:
    ids = {alert_id_of(d, day, k) for d in ("acme", "beta") for day in ("2026-12-01", "2026-12-02") for k in KINDS}
    assert len(ids) == 2 * 2 * len(KINDS)
    assert alert_id_of("acme", "2026-12-01", "paused") == alert_id_of("acme", "2026-12-01", "paused")
