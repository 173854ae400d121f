"""Device credentials: Mosquitto's hash format, the rendered files, the store, the file writer."""

from __future__ import annotations

import base64
import re
import signal
import stat
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from devices.credentials import (
    INGEST_ACCOUNT,
    BrokerAuthFiles,
    CredentialStore,
    DeviceTopicOwner,
    ServiceAccount,
    device_credentials,
    mosquitto_password_hash,
    render_acl,
    render_broker_auth,
    render_password_file,
    verify_mosquitto_password,
)
from tests.fixtures.servers import find_binary
from foundation import db
from foundation.errors import NotFound

# Made by `mosquitto_passwd -b file alice s3cret` (Mosquitto 2.0.11): a known answer that
# holds even where the binary is not installed.
MOSQUITTO_PASSWD_PASSWORD = "s3cret"
MOSQUITTO_PASSWD_HASH = (
    "$7$101$VQKytor5sHi6aICN$7cI5Cj7pZbApakYn/38dNJM0Yf7Rk7jHfQFWxsPpxO9KizeTgoDjrN8PnJz8qtMhX4mx+bsDq3o9XWth6tkkfQ=="
)
HASH_SHAPE = re.compile(r"\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==")

SMOKE = DeviceTopicOwner("wanli", "smoke_detector", "SD-XQ01-0101")
CHARGER = DeviceTopicOwner("wanli", "charging_station", "CS-FP-01")


def salt_of(encoded: str) -> bytes:
    return base64.b64decode(encoded.split("$")[3])


# --- the hash ----------------------------------------------------------------------


def test_hash_has_mosquitto_2_shape() -> None:
    assert HASH_SHAPE.fullmatch(mosquitto_password_hash("anything"))


def test_hash_is_byte_identical_to_mosquitto_passwd_given_its_salt() -> None:
    ours = mosquitto_password_hash(MOSQUITTO_PASSWD_PASSWORD, salt=salt_of(MOSQUITTO_PASSWD_HASH))

    assert ours == MOSQUITTO_PASSWD_HASH


def test_verifies_a_mosquitto_passwd_hash() -> None:
    assert verify_mosquitto_password(MOSQUITTO_PASSWD_PASSWORD, MOSQUITTO_PASSWD_HASH)
    assert not verify_mosquitto_password("s3cret ", MOSQUITTO_PASSWD_HASH)


@pytest.mark.mosquitto  # needs mosquitto_passwd from the Debian package 'mosquitto'
def test_verifies_what_the_real_mosquitto_passwd_makes_now(tmp_path: Path) -> None:
    password_file = tmp_path / "passwords"
    password_file.touch()
    password = "Wanli-一键通-pw:$x"  # non-ASCII, a colon and a dollar sign on purpose
    mosquitto_passwd = find_binary("mosquitto_passwd", "mosquitto")

    subprocess.run([mosquitto_passwd, "-b", str(password_file), "SD-XQ01-0101", password], check=True, timeout=30)

    username, encoded = password_file.read_text().strip().split(":", 1)
    assert username == "SD-XQ01-0101"
    assert verify_mosquitto_password(password, encoded)
    assert not verify_mosquitto_password(password[:-1], encoded)
    assert mosquitto_password_hash(password, salt=salt_of(encoded)) == encoded


@given(st.text(alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\0"), max_size=40))
def test_any_password_verifies_against_its_own_hash(password: str) -> None:
    encoded = mosquitto_password_hash(password)

    assert verify_mosquitto_password(password, encoded)
    assert not verify_mosquitto_password(password + "x", encoded)


def test_a_fresh_salt_every_time() -> None:
    assert mosquitto_password_hash("same") != mosquitto_password_hash("same")


def test_iterations_are_kept_in_the_hash() -> None:
    encoded = mosquitto_password_hash("pw", iterations=1000)

    assert encoded.startswith("$7$1000$")
    assert verify_mosquitto_password("pw", encoded)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"salt": b"short"}, "12-byte salt"),
        ({"salt": bytes(64)}, "12-byte salt"),
        ({"iterations": 0}, "1 to 999999999"),
        ({"iterations": 1_000_000_000}, "1 to 999999999"),
    ],
)
def test_refuses_parameters_the_broker_would_not_take(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        mosquitto_password_hash("pw", **kwargs)


def test_refuses_a_nul_the_broker_would_cut_the_password_at() -> None:
    with pytest.raises(ValueError, match="NUL"):
        mosquitto_password_hash("before\0after")


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "plaintext",
        "$6$VQKytor5sHi6aICN$7cI5Cj7pZbApakYn",  # Mosquitto 1.x plain SHA512: not issued here
        "$7$0$VQKytor5sHi6aICN$" + "A" * 86 + "==",
        "$7$101$VQKytor5sHi6aIC$" + "A" * 86 + "==",  # salt not 12 bytes
        "$7$101$VQKytor5sHi6aICN$" + "A" * 84 + "==",  # digest not 64 bytes
        MOSQUITTO_PASSWD_HASH + "\nmallory:" + MOSQUITTO_PASSWD_HASH,
    ],
)
def test_verification_refuses_malformed_hashes(encoded: str) -> None:
    with pytest.raises(ValueError):
        verify_mosquitto_password("pw", encoded)


# --- rendering ---------------------------------------------------------------------


def test_password_file_is_sorted_username_hash_lines() -> None:
    h1, h2 = mosquitto_password_hash("one"), mosquitto_password_hash("two")

    text = render_password_file({"SD-2": h2, "CS-1": h1})

    assert text == f"CS-1:{h1}\nSD-2:{h2}\n"


def test_empty_password_file_is_empty() -> None:
    assert render_password_file({}) == ""


def test_a_device_logs_in_as_its_street_kind_and_id() -> None:
    assert SMOKE.username == "wanli/smoke_detector/SD-XQ01-0101"
    assert SMOKE.publish_filter == f"safety/v1/{SMOKE.username}/+"


def test_acl_pins_every_device_to_its_street_kind_and_id_with_one_pattern() -> None:
    acl = render_acl([SMOKE, CHARGER], [INGEST_ACCOUNT])

    assert acl.splitlines() == [
        "# Generated by devices/credentials.py from the device registry: edits here are overwritten.",
        "",
        "user wanli-ingest",
        "topic read safety/#",
        "topic read dispatch/#",  # its notices, read back (the dispatcher's witness)
        "topic read drill/#",
        "topic write dispatch/#",
        "topic write drill/#",
        "",
        "# Devices log in as street/kind/device-id: %u is their own part of the topic tree.",
        "pattern write safety/v1/%u/+",
        "pattern read dispatch/v1/%u/duty",
        "pattern read drill/v1/%u/duty",
    ]


def test_the_acl_does_not_grow_with_the_devices() -> None:
    many = [DeviceTopicOwner("wanli", "smoke_detector", f"SD-{i}") for i in range(1000)]

    assert render_acl(many, [INGEST_ACCOUNT]) == render_acl([SMOKE], [INGEST_ACCOUNT])


def test_a_micro_fire_station_reads_its_own_dispatch_topic_through_the_pattern() -> None:
    station = DeviceTopicOwner("wanli", "fire_station", "MFS-XQ")

    # %u expanded: the one dispatch topic the platform sends this station's notices to
    assert "pattern read dispatch/v1/%u/duty" in render_acl([station], []).splitlines()
    assert f"dispatch/v1/{station.username}/duty" == station.read_filters[0]


def test_acl_is_the_same_whatever_the_input_order() -> None:
    accounts = [INGEST_ACCOUNT, ServiceAccount("dispatcher", write=("safety/v1/wanli/fire_station/+/command",))]

    assert render_acl([SMOKE, CHARGER], accounts) == render_acl([CHARGER, SMOKE], accounts[::-1])


def test_service_account_gets_read_and_write_lines() -> None:
    account = ServiceAccount("ops", read=("safety/v1/wanli/#",), write=("ops/v1/ack",))

    assert "user ops\ntopic read safety/v1/wanli/#\ntopic write ops/v1/ack\n" in render_acl([], [account])


def test_a_username_used_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="SD-XQ01-0101"):  # a service name can never be a device's login
        ServiceAccount(SMOKE.username, read=("safety/#",))
    with pytest.raises(ValueError, match="ingest"):
        render_acl([], [INGEST_ACCOUNT, INGEST_ACCOUNT])
    with pytest.raises(ValueError, match="more than once"):
        render_acl([SMOKE, DeviceTopicOwner("wanli", "elderly_alarm", SMOKE.device_id)], [])  # one id, two kinds


@pytest.mark.parametrize(
    ("street", "kind", "device_id"),
    [
        ("wanli", "smoke_detector", "SD-1\nuser mallory"),
        ("wanli", "smoke_detector", "SD-1\n"),  # devices.topics lets this one through
        ("wanli", "smoke_detector", "SD-1\r"),
        ("wanli", "smoke_detector", "SD 1"),
        ("wanli", "smoke_detector", "SD-1:x"),
        ("wanli", "smoke_detector", "#SD"),
        ("wanli", "smoke_detector", ""),
        ("wanli\n", "smoke_detector", "SD-1"),
        ("wanli", "smoke_detector\ntopic write #", "SD-1"),
        ("wanli", "smoke_detector", "x" * 65),
    ],
)
def test_device_values_that_could_inject_a_line_are_refused(street: str, kind: str, device_id: str) -> None:
    with pytest.raises(ValueError):
        DeviceTopicOwner(street, kind, device_id)


@pytest.mark.parametrize(
    ("username", "read"),
    [
        ("ingest\nuser x", ("safety/#",)),
        ("ingest:", ("safety/#",)),
        ("ingest", ("safety/#\ntopic write #",)),
        ("ingest", ("safety/ #",)),
        ("ingest", ("",)),
        ("ingest", ("safety/\u2028#",)),
    ],
)
def test_service_account_values_that_could_inject_a_line_are_refused(username: str, read: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        ServiceAccount(username, read=read)


@pytest.mark.parametrize(
    "entries",
    [
        {"SD-1\nmallory": MOSQUITTO_PASSWD_HASH},
        {"SD-1:x": MOSQUITTO_PASSWD_HASH},
        {"SD-1": MOSQUITTO_PASSWD_HASH + "\nmallory:" + MOSQUITTO_PASSWD_HASH},
        {"SD-1": "plaintext-password"},
        {"wanli/smoke_detector/SD-1/x": MOSQUITTO_PASSWD_HASH},
        {"wanli/+/SD-1": MOSQUITTO_PASSWD_HASH},  # Mosquitto denies a pattern login with + or #; we never write one
        {"wanli/smoke_detector/#": MOSQUITTO_PASSWD_HASH},
    ],
)
def test_password_file_refuses_anything_but_username_and_one_hash(entries: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        render_password_file(entries)


@given(st.text(min_size=1, max_size=70))
def test_any_device_id_is_refused_or_stays_on_its_own_lines(device_id: str) -> None:
    try:
        owner = DeviceTopicOwner("wanli", "smoke_detector", device_id)
    except ValueError:
        return
    password_lines = render_password_file({owner.username: MOSQUITTO_PASSWD_HASH}).splitlines()

    assert password_lines == [f"wanli/smoke_detector/{device_id}:{MOSQUITTO_PASSWD_HASH}"]
    assert owner.publish_filter.split("/") == ["safety", "v1", "wanli", "smoke_detector", device_id, "+"]


def test_broker_auth_admits_registered_devices_with_credentials_only() -> None:
    hashes = {SMOKE.device_id: mosquitto_password_hash("a"), "RETIRED-1": mosquitto_password_hash("b")}

    password_text, acl_text = render_broker_auth([SMOKE, CHARGER], hashes, {INGEST_ACCOUNT: "ingest-pw"})

    users = dict(line.split(":", 1) for line in password_text.splitlines())
    # CHARGER has no credentials, RETIRED-1 no registration
    assert sorted(users) == ["wanli-ingest", "wanli/smoke_detector/SD-XQ01-0101"]
    assert users[SMOKE.username] == hashes[SMOKE.device_id]
    assert verify_mosquitto_password("ingest-pw", users["wanli-ingest"])
    assert re.findall(r"^user (\S+)$", acl_text, flags=re.MULTILINE) == ["wanli-ingest"]


# --- the store ---------------------------------------------------------------------


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    db.METADATA.create_all(engine)
    return engine


def stored_row(engine: Engine, device_id: str) -> dict:
    with engine.connect() as conn:
        row = conn.execute(select(device_credentials).where(device_credentials.c.device_id == device_id)).mappings().one()
    return dict(row)


def test_issue_returns_a_long_random_password_and_stores_only_its_hash(engine: Engine, tmp_path: Path) -> None:
    store = CredentialStore(engine)

    password = store.issue("SD-XQ01-0101", now_ms=1_000)

    assert len(password) >= 24 and password != store.issue("SD-XQ01-0102", now_ms=1_000)
    row = stored_row(engine, "SD-XQ01-0101")
    assert (row["device_id"], row["issued_ms"], row["revoked_ms"]) == ("SD-XQ01-0101", 1_000, None)
    assert verify_mosquitto_password(password, row["password_hash"])
    assert row["password_hash"].startswith("$7$1$")  # a random 192-bit password: one PBKDF2 round (credentials.py)
    engine.dispose()
    assert password.encode() not in b"".join(p.read_bytes() for p in tmp_path.glob("x.db*"))
    assert store.active_hashes() == {
        "SD-XQ01-0101": row["password_hash"],
        "SD-XQ01-0102": stored_row(engine, "SD-XQ01-0102")["password_hash"],
    }


def test_issue_again_rotates_the_password(engine: Engine) -> None:
    store = CredentialStore(engine)
    old = store.issue("SD-1", now_ms=1_000)

    new = store.issue("SD-1", now_ms=2_000)

    [encoded] = store.active_hashes().values()
    assert verify_mosquitto_password(new, encoded)
    assert not verify_mosquitto_password(old, encoded)
    assert stored_row(engine, "SD-1")["issued_ms"] == 2_000


def test_revoked_credentials_are_not_active_and_reissue_restores_them(engine: Engine) -> None:
    store = CredentialStore(engine)
    store.issue("SD-1", now_ms=1_000)
    store.issue("SD-2", now_ms=1_000)

    store.revoke("SD-1", now_ms=5_000)
    store.revoke("SD-1", now_ms=6_000)  # idempotent: the first revocation counts

    assert list(store.active_hashes()) == ["SD-2"]
    assert stored_row(engine, "SD-1")["revoked_ms"] == 5_000
    password = store.issue("SD-1", now_ms=7_000)
    assert verify_mosquitto_password(password, store.active_hashes()["SD-1"])
    assert stored_row(engine, "SD-1")["revoked_ms"] is None


def test_revoking_credentials_never_issued_is_not_found(engine: Engine) -> None:
    with pytest.raises(NotFound, match="SD-404"):
        CredentialStore(engine).revoke("SD-404", now_ms=1)


def test_issue_refuses_an_id_that_cannot_be_a_username(engine: Engine) -> None:
    with pytest.raises(ValueError):
        CredentialStore(engine).issue("SD-1\nmallory", now_ms=1)
    assert CredentialStore(engine).active_hashes() == {}


# --- the files ---------------------------------------------------------------------


def test_files_are_written_whole_with_their_modes(tmp_path: Path) -> None:
    files = BrokerAuthFiles(tmp_path)

    files.write("SD-1:hash\n", "user SD-1\n")
    files.write("SD-2:hash\n", "user SD-2\n")

    assert files.password_path.read_text() == "SD-2:hash\n"
    assert files.acl_path.read_text() == "user SD-2\n"
    assert stat.S_IMODE(files.password_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.acl_path.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acl", "passwords"]  # no temporary files left


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    files = BrokerAuthFiles(tmp_path)
    files.write("SD-1:hash\n", "user SD-1\n")

    with pytest.raises(UnicodeEncodeError):
        files.write("SD-2:\udcff\n", "user SD-2\n")  # a lone surrogate cannot be written as UTF-8

    assert files.password_path.read_text() == "SD-1:hash\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acl", "passwords"]


def test_reload_sends_sighup() -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        BrokerAuthFiles(Path(".")).reload(sleeper.pid)
        assert sleeper.wait(timeout=10) == -signal.SIGHUP
    finally:
        sleeper.kill()
        sleeper.wait()


def test_issue_many_issues_and_rotates_in_one_go_and_lifts_revocations(engine: Engine) -> None:
    store = CredentialStore(engine)
    old = store.issue("SD-1", now_ms=1_000)
    store.revoke("SD-1", now_ms=1_500)

    passwords = store.issue_many(["SD-1", "SD-2", "SD-2", "SD-3"], now_ms=2_000)

    assert sorted(passwords) == ["SD-1", "SD-2", "SD-3"]
    assert len(set(passwords.values())) == 3 and old not in passwords.values()
    hashes = store.active_hashes()
    assert sorted(hashes) == ["SD-1", "SD-2", "SD-3"]
    assert all(verify_mosquitto_password(passwords[d], hashes[d]) for d in passwords)
    assert stored_row(engine, "SD-1")["issued_ms"] == 2_000
    assert [store.state(d) for d in ("SD-1", "SD-9")] == ["issued", "none"]


def test_issue_many_refuses_a_bad_id_before_writing_anything(engine: Engine) -> None:
    store = CredentialStore(engine)

    with pytest.raises(ValueError):
        store.issue_many(["SD-1", "SD 2"], now_ms=1)

    assert store.active_hashes() == {}
