"""Connection strings in messages: libpq's reading of them, secrets masked (no database)."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from jobfleet.conninfo import REDACTED, conninfo_problem, mask_password

# (connection string, its password as libpq reads it)
WITH_PASSWORDS = [
    ("postgresql://app:s3cret@db:5432/jobs", "s3cret"),
    ("postgresql://app:p%40ss%3Aw0rd@db/jobs", "p@ss:w0rd"),
    ("postgresql://app:with%20space@db/jobs", "with space"),
    ("postgresql://app:colon:in:it@db/jobs", "colon:in:it"),
    ("postgres://app:quote'%22s@db/jobs?sslmode=disable", "quote'\"s"),
    ("postgresql://app@db/jobs?password=q%40uery%20pw", "q@uery pw"),
    ("postgresql://app:pw1@h1:5432,h2:5433/jobs?target_session_attrs=any", "pw1"),
    ("host=db user=app password='with space and @'", "with space and @"),
    ("host=db password='it\\'s \"quoted\"' dbname=jobs", 'it\'s "quoted"'),
    ("password=plain@at:colon host=db", "plain@at:colon"),
    ("host=db sslpassword='Kx9 Ky8' user=app", "Kx9 Ky8"),
]


@pytest.mark.parametrize(("conninfo", "password"), WITH_PASSWORDS)
def test_every_secret_is_masked_and_the_rest_is_what_libpq_reads(
    conninfo: str, password: str
) -> None:
    masked = mask_password(conninfo)
    assert password not in masked
    for part in password.split():  # no piece of it either
        assert part not in masked
    expected = conninfo_to_dict(conninfo)
    for secret in ("password", "sslpassword"):
        if secret in expected:
            expected[secret] = "***"
    assert conninfo_to_dict(masked) == expected


@pytest.mark.parametrize(
    "conninfo",
    [
        "postgresql://postgres@/jobfleet?host=/tmp/run&port=5432",
        "host=db user=app dbname=jobs",
    ],
)
def test_a_string_without_a_secret_is_shown_as_it_is(conninfo: str) -> None:
    assert mask_password(conninfo) == conninfo
    assert conninfo_problem(conninfo) is None


@pytest.mark.parametrize(
    ("conninfo", "secret"),
    [
        ("postgresql://app:Zq1@Zq2@db/jobs", "Zq2"),  # libpq reads host 'Zq2@db'
        ("postgresql://app:Zq1/Zq2@db/jobs", "Zq1"),  # libpq reads host 'app', port 'Zq1'
        ("postgresql://db?password=Zq1@Zq2", "Zq1"),  # libpq reads user 'db?password=Zq1'
        ("postgresql://app:Zq1 Zq2@db/jobs", "Zq1"),  # libpq refuses, quoting it
        ("postgresql://app:Zq1@[::1/jobs", "Zq1"),
        ("host=db password=Zq1 Zq2", "Zq2"),
        ("host=db password='Zq1", "Zq1"),
    ],
)
def test_a_string_libpq_cannot_read_as_meant_is_not_shown_at_all(
    conninfo: str, secret: str
) -> None:
    assert mask_password(conninfo) == REDACTED
    problem = conninfo_problem(conninfo)
    assert problem is not None and secret not in problem
