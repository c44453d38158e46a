import uuid

from hypothesis import given
from hypothesis import strategies as st

from luxfact.auth import credentials


def test_password_hash_verifies_only_the_password() -> None:
    hashed = credentials.hash_password("a long passphrase")
    assert hashed.startswith("$argon2")
    assert credentials.verify_password(hashed, "a long passphrase")
    assert not credentials.verify_password(hashed, "a long passphrasE")
    assert not credentials.verify_password("not-a-hash", "a long passphrase")


def test_key_round_trip_and_hash() -> None:
    tenant = uuid.uuid4()
    key = credentials.new_api_key(tenant)
    parsed = credentials.parse_api_key(key)
    assert parsed is not None
    assert parsed[0] == tenant and key == f"lfx_{tenant.hex}_{parsed[1]}"
    assert len(credentials.hash_api_key(key)) == 64
    assert credentials.hash_api_key(key) != credentials.hash_api_key(key + "x")


def test_derived_secret_is_stable_and_label_bound() -> None:
    a = credentials.derived_secret("s" * 20, "demo:x")
    assert a == credentials.derived_secret("s" * 20, "demo:x")
    assert a != credentials.derived_secret("s" * 20, "demo:y")
    assert credentials.parse_api_key(credentials.new_api_key(uuid.uuid4(), a)) is not None


@given(st.text(max_size=120))
def test_parse_never_raises(text: str) -> None:
    result = credentials.parse_api_key(text)
    assert result is None or isinstance(result[0], uuid.UUID)
