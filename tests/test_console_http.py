"""The console over plain HTTP (no browser): sign-in and its cookie, sessions that end with
the key, CSRF on every action, buttons and actions by scope, the bulk actions (cancel
matching, retry a type), and the API's POST /jobs/{id}/retry with each of its statuses."""

from __future__ import annotations

import json
import re
import signal
from typing import Any

import httpx2
import psycopg
from fastapi.testclient import TestClient

import jobfleet
from jobfleet import apikeys
from jobfleet.http.app import create_app
from jobfleet.http.server import free_port
from jobfleet.settings import load_settings
from jobfleet.supervisor.store import claim
from tests.conftest import Cli, scalar, wait_until
from tests.http_support import bearer, make_key
from tests.test_http_fleet import answers

ACTIONS = ("Cancel", "Retry", "Pause", "Resume", "Retry all", "Purge")
BULK = ("Cancel matching", "Retry type")


def sign_in(client: TestClient, key: str) -> Any:
    return client.post("/ui/sign-in", data={"key": key}, follow_redirects=False)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def buttons(html: str) -> set[str]:
    return set(re.findall(r'<button type="submit">([^<]+)</button>', html))


def dead_job(conn: psycopg.Connection[Any], job_type: str = "fail") -> int:
    job_id = jobfleet.enqueue(conn, job_type, {"message": "no"})
    conn.execute(
        "UPDATE jobs SET state = 'dead', finished_at = now(), error = 'no' WHERE id = %s",
        (job_id,),
    )
    return job_id


def test_signing_in_sets_an_http_only_strict_cookie_without_the_key(
    conn: psycopg.Connection[Any], client: TestClient
) -> None:
    key = make_key(conn, "viewer", "read")
    page = client.get("/ui")
    assert page.status_code == 200
    assert '<label for="key">API key</label>' in page.text and ">Sign in</button>" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]

    answer = sign_in(client, key)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    secret = key.split("_", 2)[2]  # the whole secret: it may hold "_" itself
    assert key not in cookie and len(secret) >= 40 and secret not in cookie
    overview = client.get("/ui")
    assert "<h1>Overview</h1>" in overview.text and "viewer" in overview.text


def test_a_session_holds_on_every_process_and_a_forged_one_on_none(
    conn: psycopg.Connection[Any], db_url: str, client: TestClient
) -> None:
    """The API runs several processes: a session signed in on one works on another (its token
    is checked against the key's row, nothing kept in a process); an altered token does not."""
    sign_in(client, make_key(conn, "roamer", "read"))
    token = client.cookies["jobfleet_console"]
    with TestClient(create_app(db_url, load_settings())) as other:
        other.cookies.set("jobfleet_console", token)
        assert "<h1>Jobs</h1>" in other.get("/ui/jobs").text
        key_id, expires, nonce, mac = token.split(".")
        for forged in (
            f"{key_id}.{int(expires) + 3600}.{nonce}.{mac}",
            f"{key_id}.{expires}.{nonce}.{mac[:-1]}A" if mac[-1] != "A" else f"{token[:-1]}B",
            "0000000000000000." + token.split(".", 1)[1],
        ):
            other.cookies.set("jobfleet_console", forged)
            assert other.get("/ui/jobs", follow_redirects=False).status_code == 303, forged


def test_bad_keys_and_keys_without_read_cannot_sign_in(
    conn: psycopg.Connection[Any], client: TestClient
) -> None:
    writer = make_key(conn, "writer", "enqueue")
    for bad, says in (
        ("nonsense", "not an API key"),
        (writer[:-3] + "abc", "unknown, revoked or wrong"),
        (writer, "lacks the &#39;read&#39; scope"),
    ):
        answer = sign_in(client, bad)
        assert answer.status_code == 401 and says in answer.text
        assert "set-cookie" not in answer.headers
    assert client.get("/ui/jobs", follow_redirects=False).status_code == 303
    foreign = client.post(
        "/ui/sign-in", data={"key": writer}, headers={"Origin": "http://evil.example"}
    )
    assert foreign.status_code == 403


def test_a_read_only_key_sees_everything_and_no_action(
    conn: psycopg.Connection[Any], client: TestClient
) -> None:
    queued = jobfleet.enqueue(conn, "echo", {"x": "<script>alert(1)</script>"})
    dead = dead_job(conn)
    assert sign_in(client, make_key(conn, "reader", "read")).status_code == 303
    pages = ["/ui", "/ui/jobs", f"/ui/jobs/{queued}", f"/ui/jobs/{dead}", "/ui/dead"]
    for path in [*pages, "/ui/jobs?type=echo", "/ui/queues", "/ui/periodic"]:
        page = client.get(path)
        assert page.status_code == 200, path
        assert not buttons(page.text) & {*ACTIONS, *BULK}, path
    shown = client.get(f"/ui/jobs/{queued}").text
    assert "<script>alert" not in shown and "&lt;script&gt;alert(1)&lt;/script&gt;" in shown

    token = csrf_of(client.get("/ui").text)
    refused = client.post(f"/ui/jobs/{queued}/cancel", data={"csrf": token})
    assert refused.status_code == 403 and "lacks the &#39;cancel&#39; scope" in refused.text
    assert client.post(f"/ui/jobs/{dead}/retry", data={"csrf": token}).status_code == 403
    assert client.post("/ui/queues/default/pause", data={"csrf": token}).status_code == 403
    matching = {"csrf": token, "type": "echo"}
    assert client.post("/ui/jobs/cancel-matching", data=matching).status_code == 403
    assert client.post("/ui/dead/retry-type", data={**matching, "type": "fail"}).status_code == 403
    assert scalar(conn, "SELECT state FROM jobs WHERE id = %s", (queued,)) == "queued"
    assert scalar(conn, "SELECT state FROM jobs WHERE id = %s", (dead,)) == "dead"
    assert scalar(conn, "SELECT count(*) FROM queues WHERE paused") == 0


def test_a_full_key_gets_the_buttons_and_every_action_needs_the_csrf_token(
    conn: psycopg.Connection[Any], client: TestClient
) -> None:
    queued = jobfleet.enqueue(conn, "echo", {})
    dead = dead_job(conn)
    assert sign_in(client, make_key(conn, "full", "read,cancel,admin")).status_code == 303
    assert "Cancel" in buttons(client.get(f"/ui/jobs/{queued}").text)
    assert "Retry" in buttons(client.get(f"/ui/jobs/{dead}").text)
    assert {"Retry", "Retry all", "Purge"} <= buttons(client.get("/ui/dead").text)
    assert "Pause" in buttons(client.get("/ui/queues").text)

    for data in ({}, {"csrf": "forged"}):
        refused = client.post(f"/ui/jobs/{queued}/cancel", data=data, follow_redirects=False)
        assert refused.status_code == 403 and "CSRF" in refused.text
    assert scalar(conn, "SELECT state FROM jobs WHERE id = %s", (queued,)) == "queued"

    token = csrf_of(client.get("/ui").text)
    done = client.post(f"/ui/jobs/{queued}/cancel", data={"csrf": token}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == f"/ui/jobs/{queued}"
    assert scalar(conn, "SELECT state FROM jobs WHERE id = %s", (queued,)) == "cancelled"
    assert "job 1 cancelled" in client.get(f"/ui/jobs/{queued}").text  # the notice, once
    again = client.post(f"/ui/jobs/{queued}/cancel", data={"csrf": token})
    assert "already cancelled" in again.text  # a refused action says why on the page

    client.post(f"/ui/dead/{dead}/retry", data={"csrf": token})
    assert scalar(conn, "SELECT state FROM jobs WHERE id = %s", (dead,)) == "queued"
    client.post("/ui/queues/default/pause", data={"csrf": token})
    assert scalar(conn, "SELECT paused FROM queues WHERE name = 'default'") is True
    assert "Resume" in buttons(client.get("/ui/queues").text)
    client.post("/ui/queues/default/resume", data={"csrf": token})
    assert scalar(conn, "SELECT paused FROM queues WHERE name = 'default'") is False

    more = [dead_job(conn) for _ in range(3)]
    assert (
        "3 dead jobs queued again" in client.post("/ui/dead/retry-all", data={"csrf": token}).text
    )
    conn.execute("UPDATE jobs SET state = 'dead', finished_at = now() WHERE id = ANY(%s)", (more,))
    assert "3 dead jobs deleted" in client.post("/ui/dead/purge", data={"csrf": token}).text
    assert scalar(conn, "SELECT count(*) FROM jobs WHERE state = 'dead'") == 0


def states_of(conn: psycopg.Connection[Any], ids: list[int]) -> set[str]:
    return {r[0] for r in conn.execute("SELECT state FROM jobs WHERE id = ANY(%s)", (ids,))}


def test_cancel_matching_cancels_the_queued_jobs_the_filter_names(
    conn: psycopg.Connection[Any], client: TestClient
) -> None:
    """`Cancel matching` (scope cancel) on a jobs page filtered by type and/or queue cancels
    their queued jobs, scheduled ones too, through jobfleet.bulk; running jobs and jobs of
    other types or queues are left alone."""
    jobfleet.enqueue(conn, "echo", {}, priority=10)
    running = claim(conn, holder="n1", types=["echo"], queues=None, limit=1, lease_seconds=30)
    here = jobfleet.enqueue_many(conn, "echo", [{"n": n} for n in range(3)])
    here.append(jobfleet.enqueue(conn, "echo", {}, delay=3600))  # scheduled for later
    mail = jobfleet.enqueue_many(conn, "echo", [{}, {}], queue="mail")
    others = jobfleet.enqueue_many(conn, "noop", [{}, {}])
    sign_in(client, make_key(conn, "canceller", "read,cancel"))
    for path in ("/ui/jobs?type=echo", "/ui/jobs?queue=mail", "/ui/jobs?type=echo&state=queued"):
        assert "Cancel matching" in buttons(client.get(path).text), path
    for path in ("/ui/jobs", "/ui/jobs?type=echo&state=running", "/ui/jobs?type=echo&node=n1"):
        assert "Cancel matching" not in buttons(client.get(path).text), path
    assert "Retry type" not in buttons(client.get("/ui/dead").text)  # that one needs admin

    page = client.get("/ui/jobs?type=echo&queue=default").text
    bulk_form = r'<form method="post" action="([^"]+)" class="actions bulk">(.*?)</form>'
    form = re.search(bulk_form, page, re.S)
    assert form and form.group(1) == "/ui/jobs/cancel-matching"
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', form.group(2)))
    assert fields == {"csrf": csrf_of(page), "type": "echo", "queue": "default"}
    for data in ({"type": "echo"}, {**fields, "csrf": "forged"}):
        refused = client.post("/ui/jobs/cancel-matching", data=data)
        assert refused.status_code == 403 and "CSRF" in refused.text
    assert states_of(conn, here) == {"queued"}

    done = client.post("/ui/jobs/cancel-matching", data=fields, follow_redirects=False)
    assert done.status_code == 303
    assert done.headers["location"] == "/ui/jobs?type=echo&queue=default"
    shown = client.get(done.headers["location"]).text
    assert "Cancelled 4 jobs of type echo in queue default" in shown
    assert states_of(conn, here) == {"cancelled"}
    assert states_of(conn, [j.id for j in running]) == {"running"}
    assert states_of(conn, mail + others) == {"queued"}

    by_queue = client.post(
        "/ui/jobs/cancel-matching", data={"csrf": fields["csrf"], "queue": "mail"}
    )
    assert "Cancelled 2 jobs in queue mail" in by_queue.text
    assert states_of(conn, mail) == {"cancelled"} and states_of(conn, others) == {"queued"}
    again = client.post("/ui/jobs/cancel-matching", data={"csrf": fields["csrf"], "type": "echo"})
    assert "Cancelled 0 jobs of type echo" in again.text
    neither = client.post("/ui/jobs/cancel-matching", data={"csrf": fields["csrf"]})
    assert "give a type, a queue or both" in neither.text
    assert states_of(conn, others) == {"queued"}
    assert states_of(conn, [j.id for j in running]) == {"running"}


def test_retry_type_queues_the_dead_jobs_of_a_type_again(
    conn: psycopg.Connection[Any], client: TestClient
) -> None:
    """`Retry type` (scope admin) on the dead letters queues every dead job of the type given
    again, through jobfleet.bulk; dead jobs of other types stay dead."""
    failed = [dead_job(conn) for _ in range(3)]
    other = dead_job(conn, "echo")
    sign_in(client, make_key(conn, "fixer", "read,admin"))
    page = client.get("/ui/dead").text
    assert "Retry type" in buttons(page) and '<input name="type" required' in page
    assert "Cancel matching" not in buttons(client.get("/ui/jobs?type=fail").text)
    token = csrf_of(page)
    refused = client.post("/ui/jobs/cancel-matching", data={"csrf": token, "type": "echo"})
    assert refused.status_code == 403 and "lacks the &#39;cancel&#39; scope" in refused.text
    for data in ({"type": "fail"}, {"csrf": "forged", "type": "fail"}):
        refused = client.post("/ui/dead/retry-type", data=data)
        assert refused.status_code == 403 and "CSRF" in refused.text
    assert states_of(conn, failed) == {"dead"}

    retry = {"csrf": token, "type": "fail"}
    done = client.post("/ui/dead/retry-type", data=retry, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/ui/dead"
    assert "Queued 3 jobs again (the dead jobs of type fail)" in client.get("/ui/dead").text
    assert states_of(conn, failed) == {"queued"} and states_of(conn, [other]) == {"dead"}
    one = client.post("/ui/dead/retry-type", data={"csrf": token, "type": "echo"})
    assert "Queued 1 job again" in one.text and states_of(conn, [other]) == {"queued"}
    empty = client.post("/ui/dead/retry-type", data={"csrf": token, "type": " "})
    assert "give the type of the dead jobs" in empty.text


def test_signing_out_or_revoking_the_key_ends_the_session(
    conn: psycopg.Connection[Any], client: TestClient
) -> None:
    key = make_key(conn, "leaver", "read")
    sign_in(client, key)
    token = csrf_of(client.get("/ui").text)
    assert client.post("/ui/sign-out", data={"csrf": "wrong"}).status_code == 403
    out = client.post("/ui/sign-out", data={"csrf": token}, follow_redirects=False)
    assert out.status_code == 303 and 'jobfleet_console=""' in out.headers["set-cookie"]
    client.cookies.clear()
    assert client.get("/ui/jobs", follow_redirects=False).status_code == 303

    sign_in(client, key)
    assert client.get("/ui/jobs").status_code == 200
    apikeys.revoke_key(conn, "leaver")
    assert client.get("/ui/jobs", follow_redirects=False).status_code == 303
    assert client.get("/ui/live", follow_redirects=False).status_code == 303


def test_jobs_page_filters_and_pages_by_id(
    conn: psycopg.Connection[Any], client: TestClient
) -> None:
    ids = jobfleet.enqueue_many(conn, "echo", [{"n": n} for n in range(60)])
    other = jobfleet.enqueue(conn, "noop", None, queue="other")
    sign_in(client, make_key(conn, "pager", "read"))
    first = client.get("/ui/jobs").text
    shown = [int(i) for i in re.findall(r'<tr data-job="(\d+)">', first)]
    assert shown == [other, *sorted(ids, reverse=True)[:49]]
    older = re.search(r'href="/ui/jobs\?before=(\d+)"', first)
    assert older and int(older.group(1)) == shown[-1]
    rest = client.get(f"/ui/jobs?before={older.group(1)}").text
    assert [int(i) for i in re.findall(r'<tr data-job="(\d+)">', rest)] == sorted(ids)[:11][::-1]
    only = client.get("/ui/jobs?queue=other&type=noop&state=queued").text
    assert re.findall(r'<tr data-job="(\d+)">', only) == [str(other)]
    bad = client.get("/ui/jobs?state=%00")
    assert bad.status_code == 422 and "state" in bad.text
    assert client.get("/ui/jobs?before=99999999999999999999").status_code == 422


def test_post_jobs_retry_answers_each_status(
    conn: psycopg.Connection[Any], client: TestClient
) -> None:
    admin = bearer(make_key(conn, "admin", "read,admin"))
    reader = bearer(make_key(conn, "reader", "read,cancel"))
    dead, queued = dead_job(conn), jobfleet.enqueue(conn, "echo", {})
    assert client.post(f"/jobs/{dead}/retry").status_code == 401
    assert client.post(f"/jobs/{dead}/retry", headers=reader).status_code == 403
    answer = client.post(f"/jobs/{dead}/retry", headers=admin)
    assert answer.status_code == 200 and answer.json() == {"id": dead, "state": "queued"}
    assert scalar(conn, "SELECT state FROM jobs WHERE id = %s", (dead,)) == "queued"
    conflict = client.post(f"/jobs/{queued}/retry", headers=admin)
    assert conflict.status_code == 409 and "only dead or cancelled" in conflict.json()["message"]
    assert client.post("/jobs/424242/retry", headers=admin).status_code == 404
    assert client.post("/jobs/0/retry", headers=admin).status_code == 422
    documented = client.get("/openapi.json").json()["paths"]["/jobs/{job_id}/retry"]["post"]
    assert set(documented["responses"]) == {
        "200", "401", "403", "404", "409", "422", "429", "500", "503"
    }  # fmt: skip
    assert all("/ui" not in path for path in client.get("/openapi.json").json()["paths"])


def test_jobfleet_api_serves_the_console_and_a_live_stream(
    conn: psycopg.Connection[Any], cli: Cli
) -> None:
    """`jobfleet api` (an API-only host) serves /ui; a signed-in browser's live stream gets
    snapshots with the counts, and the process still stops cleanly on SIGTERM."""
    jobfleet.enqueue(conn, "echo", {})
    key = make_key(conn, "edge", "read")
    port = free_port()
    api = cli.start("api", "--port", str(port), "--host", "127.0.0.1")
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: answers(f"{base}/healthz"), what="jobfleet api to answer")
        with httpx2.Client(base_url=base, timeout=30, follow_redirects=True) as browser:
            assert "API key" in browser.get("/ui").text
            assert browser.post("/ui/sign-in", data={"key": key}).status_code == 200
            with browser.stream("GET", "/ui/live?watch=1") as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                for line in stream.iter_lines():
                    if line.startswith("data: "):
                        snapshot = json.loads(line[len("data: ") :])
                        break
        assert snapshot["counts"]["queued"] == 1 and snapshot["jobs"][0]["id"] == 1
    finally:
        api.send_signal(signal.SIGTERM)
        api.communicate(timeout=30)
    assert api.returncode == 0
