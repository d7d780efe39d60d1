"""The dashboard page (dashboard/app.py) run by Streamlit's AppTest against a real server.

AppTest runs the script in this process, so the page's settings are passed as
environment variables with monkeypatch. Buttons inside ``st.dialog`` and the
row selection of a table cannot be driven here: the browser test covers them.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from botrix_toolkit.dashboard import snapshot
from botrix_toolkit.dashboard.cells import MAX_CELL_CHARS
from botrix_toolkit.dashboard.state import DEPTH_SAMPLE_INTERVAL_S, DepthHistory
from streamlit.testing.v1 import AppTest

from botrix_toolkit import QueueService
from botrix_toolkit.cli import main as cli
from botrix_toolkit.core.json_depth import MAX_JSON_DEPTH
from botrix_toolkit.server.ports import free_port
from tests.waiting import wait_for

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
TIMEOUT_S = 60  # the first run imports plotly and pandas; generous on a shared machine
SECRET = "hunter2-Secret-7f3a"


@pytest.fixture
def page_env(monkeypatch: pytest.MonkeyPatch, redis_url: str, key_prefix: str) -> None:
    """Point the page at the test server and the test's own key prefix."""
    monkeypatch.setenv("BOTRIX_REDIS_URL", redis_url)
    monkeypatch.setenv("BOTRIX_PREFIX", key_prefix)
    monkeypatch.delenv("BOTRIX_DASHBOARD_PASSWORD", raising=False)


def run_page() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S)
    at.run()
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def texts(elements: Any) -> list[str]:
    return [str(e.value) for e in elements]


def button(at: AppTest, label: str) -> Any:
    matches = [b for b in at.button if b.label == label]
    assert matches, f"no button {label!r}; buttons: {[b.label for b in at.button]}"
    return matches[0]


def assert_no_exception(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]


def everything_rendered(at: AppTest) -> str:
    """Every element's protobuf text and value (dataframes as CSV), for secret searches."""
    parts: list[str] = []

    def walk(node: Any) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None:
            parts.append(str(proto))
        if type(node).__name__ == "Dataframe":
            parts.append(node.value.to_csv())
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return "\n".join(parts)


def test_page_renders_queue_counts(page_env: None, queue: QueueService) -> None:
    queue.add_jobs([{"priority": "high"}] * 2 + [{"priority": "normal"}] + [{"priority": "low"}] * 3)

    at = run_page()

    assert_no_exception(at)
    shown = metrics(at)
    assert (shown["pending"], shown["high"], shown["normal"], shown["low"]) == ("6", "2", "1", "3")
    assert shown["processing"] == "0"
    assert shown["stalled"] == "0"
    pending_table = at.dataframe[0].value
    assert len(pending_table) == 6
    assert list(pending_table["priority_label"].astype(str))[:2] == ["high", "high"]


def test_add_form_adds_copies_in_bulk(page_env: None, queue: QueueService) -> None:
    at = run_page()
    at.selectbox(key="add_priority").set_value("high")
    at.number_input(key="add_count").set_value(3)
    at.number_input(key="add_copies").set_value(250)
    at.text_input(key="add_username").set_value("alice")
    at.checkbox(key="add_test_mode").check()
    at.text_area(key="add_extra").set_value('{"source": "dashboard-test"}')
    button(at, "Add jobs").click()
    at.run()

    assert_no_exception(at)
    stats = queue.get_queue_stats()
    assert (stats["queue_length"], stats["high_priority"]) == (250, 250)
    job = queue.get_pending_jobs(limit=1)[0]
    assert (job.count, job.username, job.test_mode, job.priority) == (3, "alice", True, 2)
    assert job.extra == {"source": "dashboard-test"}
    assert any("Added 250 high-priority job(s)" in s for s in texts(at.success))
    assert metrics(at)["pending"] == "250"


@pytest.mark.parametrize(("extra", "problem"), [
    ('{"source": ', "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"priority": 0}', "may not set priority"),
    # poison: a traceback before the depth limit (core/json_depth.py)
    ("[" * 5000 + "]" * 5000, f"deeper than {MAX_JSON_DEPTH} levels"),
    ('{"deep": ' + "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH + "}", f"deeper than {MAX_JSON_DEPTH} levels"),
    ('{"ratio": NaN}', "NaN"),
    ('{"ratio": -Infinity}', "Infinity"),
])
def test_bad_extra_json_is_an_error_and_writes_nothing(
    page_env: None, queue: QueueService, extra: str, problem: str
) -> None:
    at = run_page()
    at.number_input(key="add_copies").set_value(5)
    at.text_area(key="add_extra").set_value(extra)
    button(at, "Add jobs").click()
    at.run()

    assert_no_exception(at)
    assert any(problem in s and "Nothing added" in s for s in texts(at.error)), texts(at.error)
    assert queue.get_queue_stats()["queue_length"] == 0
    assert queue.redis.keys(f"{queue.keys.prefix}*") == []


def test_cancel_by_id_known_and_unknown(page_env: None, queue: QueueService) -> None:
    keep, cancel = queue.add_jobs([{"priority": 1}, {"priority": 1}])
    at = run_page()

    at.text_input(key="cancel_id").set_value(cancel)
    button(at, "Cancel job").click()
    at.run()
    assert_no_exception(at)
    assert queue.get_job_status(cancel) == "cancelled"
    assert queue.get_job_status(keep) == "pending"
    assert any(f"Cancelled job {cancel}" in s for s in texts(at.success))
    assert metrics(at)["pending"] == "1"

    at.text_input(key="cancel_id").set_value("no-such-job-123")
    button(at, "Cancel job").click()
    at.run()
    assert_no_exception(at)
    assert any("Unknown job id 'no-such-job-123'" in s for s in texts(at.error)), texts(at.error)
    assert queue.get_job_status(keep) == "pending"


def test_prune_orphans_reports_what_it_removed(page_env: None, queue: QueueService) -> None:
    orphan, alive = queue.add_jobs([{"priority": 1}, {"priority": 1}])
    queue.redis.delete(queue.keys.data(orphan))  # as if its data had expired
    at = run_page()

    button(at, "Prune orphans").click()
    at.run()
    assert_no_exception(at)
    assert any("Pruned 1 orphaned id(s)" in s for s in texts(at.success)), texts(at.success)
    assert queue.get_queue_length() == 1

    button(at, "Prune orphans").click()
    at.run()
    assert any("No orphans" in s for s in texts(at.info)), texts(at.info)


def test_recover_stalled_reports_and_requeues(page_env: None, queue: QueueService) -> None:
    [job_id] = queue.add_jobs([{"priority": 2}])
    [held] = queue.dequeue_jobs(1)
    assert held.id == job_id
    at = run_page()
    at.number_input(key="stall_timeout_s").set_value(1.0)
    at.run()
    time.sleep(1.2)  # let the lease age past the 1 s timeout (not a timing assertion)
    at.run()
    assert metrics(at)["stalled"] == "1"

    button(at, "Recover stalled (> 1 s)").click()
    at.run()
    assert_no_exception(at)
    assert any("Recovered 1 stalled job(s)" in s for s in texts(at.success)), texts(at.success)
    assert queue.get_job_status(job_id) == "pending"
    assert metrics(at)["processing"] == "0"

    button(at, "Recover stalled (> 1 s)").click()
    at.run()
    assert any("nothing recovered" in s for s in texts(at.info)), texts(at.info)


def test_unreachable_server_is_a_message_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, key_prefix: str
) -> None:
    monkeypatch.setenv("BOTRIX_REDIS_URL", f"redis://:{SECRET}@127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("BOTRIX_PREFIX", key_prefix)
    monkeypatch.delenv("BOTRIX_DASHBOARD_PASSWORD", raising=False)

    at = run_page()

    assert_no_exception(at)
    assert any("Cannot reach the queue server" in s for s in texts(at.error)), texts(at.error)
    assert not at.metric
    page = everything_rendered(at)
    assert "redis://:***@127.0.0.1" in page
    assert SECRET not in page

    at.text_input(key="cancel_id").set_value("some-job")
    button(at, "Cancel job").click()
    at.run()
    assert_no_exception(at)
    assert any("unreachable, nothing was changed" in s for s in texts(at.error)), texts(at.error)


def test_the_unreachable_banner_names_the_server_once_and_the_add_form_is_disabled(
    monkeypatch: pytest.MonkeyPatch, key_prefix: str
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    monkeypatch.setenv("BOTRIX_REDIS_URL", url)
    monkeypatch.setenv("BOTRIX_PREFIX", key_prefix)
    monkeypatch.delenv("BOTRIX_DASHBOARD_PASSWORD", raising=False)

    at = run_page()

    assert_no_exception(at)
    [banner] = [text for text in texts(at.error) if "Cannot reach the queue server" in text]
    assert banner.count(url) == 1, banner
    assert ".." not in banner and ". ." not in banner, banner
    assert button(at, "Add jobs").disabled
    assert at.selectbox(key="add_priority").disabled and at.number_input(key="add_copies").disabled
    assert any("adding jobs is disabled" in text for text in texts(at.warning)), texts(at.warning)


def test_job_secrets_and_html_are_never_rendered(page_env: None, queue: QueueService) -> None:
    [job_id] = queue.add_jobs([{"priority": 1, "username": "<b>bob</b>", "password": SECRET,
                                "extra": {"note": "<script>alert(1)</script>"}}])
    [held_id] = queue.add_jobs([{"priority": 2, "username": "carol", "password": SECRET}])
    queue.dequeue_jobs(1)

    at = run_page()

    assert_no_exception(at)
    page = everything_rendered(at)
    assert "carol" in page and job_id in page  # the search does see the tables
    assert SECRET not in page
    pending = at.dataframe[0].value
    assert "password" not in pending.columns
    row = pending[pending["id"] == job_id].iloc[0]
    assert row["username"] == "<b>bob</b>"  # shown as text in the table
    assert row["note"] == "<script>alert(1)</script>"
    assert list(at.dataframe[1].value["id"]) == [held_id]
    assert not any("<b>bob</b>" in str(m.value) for m in at.markdown)


# Issue 14's hostile queue: a poison job (deeper than Python's json can read), secrets below
# the top level, a megabyte value, and an id with a right-to-left override and a control character.
POISON_BODY = '{"id": "poison", "priority": 2, "deep": ' + "[" * 100_000 + "]" * 100_000 + "}"
NESTED_SECRET_JOB = {"id": "nested", "priority": 2, "password": "TOP-pw",
                     "meta": {"password": "NESTED-pw", "creds": [{"password": "LIST-pw"}],
                              "Password": "CASE-pw", "api_key": "KEY-pw"}}
NESTED_SECRETS = ("TOP-pw", "NESTED-pw", "LIST-pw", "CASE-pw", "KEY-pw")
SPOOFED_ID = "evil\u202eexe.txt\x07"


def fill_hostile_queue(queue: QueueService) -> None:
    queue.add_job({"id": "poison", "priority": 2})
    queue.redis.set(queue.keys.data("poison"), POISON_BODY)  # as another client could write it
    queue.add_jobs([NESTED_SECRET_JOB, {"id": "long", "priority": 1, "blob": "x" * 1_000_000},
                    {"id": SPOOFED_ID, "priority": 0, "username": "rtl\u202eguy"}])


def test_a_hostile_queue_renders_cut_escaped_and_redacted(page_env: None, queue: QueueService) -> None:
    fill_hostile_queue(queue)

    at = run_page()

    assert_no_exception(at)
    assert metrics(at)["pending"] == "4"
    pending = at.dataframe[0].value.set_index("id")
    assert sorted(pending.index) == sorted(["nested", "long", "evil\\u202eexe.txt\\x07"])
    assert pending.loc["evil\\u202eexe.txt\\x07", "username"] == "rtl\\u202eguy"
    assert pending.loc["long", "blob"] == "x" * MAX_CELL_CHARS + "… (1,000,000 characters)"
    assert pending.loc["nested", "meta"] == json.dumps(
        {"password": "***", "creds": [{"password": "***"}], "Password": "***", "api_key": "***"})
    page = everything_rendered(at)
    assert not any(secret in page for secret in NESTED_SECRETS)
    assert "\u202e" not in page and "\x07" not in page and "x" * 1000 not in page
    # the poison job is still queued: reads skip it, the page shows the others
    assert queue.get_queue_length() == 4


def test_numbers_that_are_not_finite_are_never_used_nor_a_traceback(page_env: None,
                                                                    queue: QueueService) -> None:
    # What a crafted websocket message can send; before, each gave a traceback in the tab.
    queue.add_jobs([{"priority": 1}] * 12)
    at = run_page()
    for key, value in (("top_n", float("nan")), ("window_min", float("inf")),
                       ("stall_timeout_s", float("-inf"))):
        at.number_input(key=key).set_value(value)
    at.run()
    assert_no_exception(at)
    assert len(at.dataframe[0].value) == 12  # top_n back to its default
    at.number_input(key="add_count").set_value(float("nan"))
    at.number_input(key="add_copies").set_value(float("inf"))
    button(at, "Add jobs").click()
    at.run()
    assert_no_exception(at)
    # each went back to its default (1) before the form read it: one job, count 1
    assert queue.get_queue_length() == 13
    assert {job.count for job in queue.get_pending_jobs()} == {0, 1}


def test_password_gate(monkeypatch: pytest.MonkeyPatch, page_env: None,
                       queue: QueueService) -> None:
    monkeypatch.setenv("BOTRIX_DASHBOARD_PASSWORD", SECRET)
    queue.add_jobs([{"priority": 1}])

    at = run_page()
    assert_no_exception(at)
    assert not at.metric and not at.dataframe
    assert [b.label for b in at.button] == ["Sign in"]

    at.text_input(key="sign_in_password").set_value("wrong guess")
    button(at, "Sign in").click()
    at.run()
    assert any("Wrong password" in s for s in texts(at.error))
    assert not at.metric

    at.text_input(key="sign_in_password").set_value(SECRET)
    button(at, "Sign in").click()
    at.run()
    assert_no_exception(at)
    assert metrics(at)["pending"] == "1"
    assert SECRET not in everything_rendered(at)


def test_cli_refuses_a_public_host_without_a_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("BOTRIX_DASHBOARD_PASSWORD", raising=False)

    code = cli.main(["dashboard", "--host", "0.0.0.0", "--redis-url", "redis://127.0.0.1:1/0"])

    assert code == cli.EXIT_ERROR
    assert "BOTRIX_DASHBOARD_PASSWORD" in capsys.readouterr().err


def test_page_recovers_when_the_server_comes_back(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, key_prefix: str
) -> None:
    from botrix_toolkit.server.embedded import EmbeddedServer

    port = free_port()
    server = EmbeddedServer(data_dir=tmp_path, port=port)
    url = server.start()
    monkeypatch.setenv("BOTRIX_REDIS_URL", url)
    monkeypatch.setenv("BOTRIX_PREFIX", key_prefix)
    monkeypatch.delenv("BOTRIX_DASHBOARD_PASSWORD", raising=False)
    try:
        QueueService.from_url(url, prefix=key_prefix).add_jobs([{"priority": 1}] * 2)
        at = run_page()
        assert metrics(at)["pending"] == "2"

        server.stop()
        at.run()  # what the live fragment does every refresh
        assert_no_exception(at)
        assert any("Cannot reach the queue server" in s for s in texts(at.error))

        assert button(at, "Add jobs").disabled

        assert EmbeddedServer(data_dir=tmp_path, port=port).start() == url  # same data (AOF)
        at.run()
        assert_no_exception(at)
        assert not at.error
        assert metrics(at)["pending"] == "2"
        assert not button(at, "Add jobs").disabled
    finally:
        EmbeddedServer(data_dir=tmp_path).stop()


def chart_spec(at: AppTest, title: str) -> dict[str, Any]:
    """The plotly figure of the chart with that title, as the page sent it."""
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        spec = getattr(getattr(node, "proto", None), "spec", "")
        if spec and json.loads(spec).get("layout", {}).get("title", {}).get("text") == title:
            found.append(json.loads(spec))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    assert len(found) == 1, f"{len(found)} charts titled {title!r}"
    return found[0]


def depth_samples(at: AppTest) -> int:
    return max(len(trace.get("x", [])) for trace in chart_spec(at, "Queue depth")["data"])


def test_every_tab_draws_the_queue_depth_sampled_by_all(page_env: None, queue: QueueService) -> None:
    queue.add_job({"id": "d1"})
    assert depth_samples(run_page()) == 1
    time.sleep(DEPTH_SAMPLE_INTERVAL_S + 0.1)
    queue.add_job({"id": "d2"})
    # a new tab (session) starts with the first one's sample, and adds its own
    assert depth_samples(run_page()) == 2


def test_depth_history_keeps_one_sample_a_second_and_a_bounded_past() -> None:
    history = DepthHistory(maxlen=3)
    start = pd.Timestamp("2026-11-28T10:00:00Z")
    for offset_s, pending in [(0, 5), (0.4, 6), (1.0, 7), (2.5, 8), (4.0, 9)]:
        history.record(start + pd.Timedelta(seconds=offset_s), {"queue_length": pending})
    frame = history.frame()
    assert frame["queue_length"].tolist() == [7, 8, 9]  # 6 came too soon; 5 fell off the end
    assert frame["timestamp"].is_monotonic_increasing


def test_several_prefixes_give_a_queue_picker_and_an_all_queues_view(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, key_prefix: str
) -> None:
    other_prefix = key_prefix + ":reports"
    first = QueueService.from_url(redis_url, prefix=key_prefix)
    second = QueueService.from_url(redis_url, prefix=other_prefix)
    try:
        first.add_jobs([{"priority": "high"}] * 2)
        second.add_jobs([{"priority": "low"}] * 5)
        monkeypatch.setenv("BOTRIX_REDIS_URL", redis_url)
        monkeypatch.setenv("BOTRIX_PREFIX", f"{key_prefix},{other_prefix}")
        monkeypatch.delenv("BOTRIX_DASHBOARD_PASSWORD", raising=False)
        at = run_page()
        assert_no_exception(at)
        picker = at.sidebar.selectbox(key="queue")
        assert picker.options == [key_prefix, other_prefix, "all queues"]
        assert metrics(at)["pending"] == "2"
        picker.select(other_prefix).run()
        assert_no_exception(at)
        assert metrics(at)["pending"] == "5" and metrics(at)["low"] == "5"
        at.sidebar.selectbox(key="queue").select("all queues").run()
        assert_no_exception(at)
        table = at.dataframe[0].value
        assert table["queue"].tolist() == [key_prefix, other_prefix]
        assert table["queue_length"].tolist() == [2, 5]
        assert len(at.get("plotly_chart")) == 2
    finally:
        leftovers = list(first.redis.scan_iter(match=f"{key_prefix}:*"))  # both queues' keys
        if leftovers:
            first.redis.delete(*leftovers)
        first.close()
        second.close()


@pytest.fixture
def fresh_throttle(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The process's sign-in throttle replaced by one on a clock the test moves."""
    from botrix_toolkit.dashboard import auth
    from botrix_toolkit.dashboard.signin_throttle import SignInThrottle

    clock = {"now": 1000.0}
    monkeypatch.setattr(auth, "THROTTLE", SignInThrottle(lambda: clock["now"]))
    return clock


def sign_in(at: AppTest, password: str) -> AppTest:
    at.text_input(key="sign_in_password").set_value(password)
    button(at, "Sign in").click()
    at.run()
    return at


def test_repeated_wrong_passwords_are_slowed_down_for_every_session_and_logged(
    monkeypatch: pytest.MonkeyPatch, page_env: None, queue: QueueService, fresh_throttle: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from botrix_toolkit.dashboard.signin_throttle import CLIENT_FREE_FAILURES

    caplog.set_level(logging.INFO, logger="botrix_toolkit.dashboard.auth")
    monkeypatch.setenv("BOTRIX_DASHBOARD_PASSWORD", SECRET)
    queue.add_jobs([{"priority": 1}])
    at = run_page()
    for _ in range(CLIENT_FREE_FAILURES):
        assert texts(sign_in(at, "wrong guess").error) == ["Wrong password."]
    assert texts(sign_in(at, "wrong guess").error) == ["Wrong password. Try again in 1 s."]
    # the right password during the wait is not even checked
    assert texts(sign_in(at, SECRET).error) == ["Too many failed sign-ins. Try again in 1 s."]
    assert not at.metric
    # a new session (a new tab, a new websocket) from the same address waits too
    other = run_page()
    assert texts(sign_in(other, SECRET).error) == ["Too many failed sign-ins. Try again in 1 s."]
    assert not other.metric

    fresh_throttle["now"] += 1.0
    sign_in(at, SECRET)
    assert_no_exception(at)
    assert metrics(at)["pending"] == "1"

    failures = [r.getMessage() for r in caplog.records if "sign-in failed" in r.getMessage()]
    assert len(failures) == CLIENT_FREE_FAILURES + 1
    assert all(re.search(r"at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00 from 127\.0\.0\.1 \(local\)", m)
               for m in failures), failures
    assert sum("sign-in refused" in r.getMessage() for r in caplog.records) == 2
    assert all(SECRET not in r.getMessage() and "wrong guess" not in r.getMessage()
               for r in caplog.records)


@pytest.mark.parametrize("blank", ["", "   ", "\t\n"])
def test_a_blank_dashboard_password_is_refused_by_the_page_and_the_cli(
    monkeypatch: pytest.MonkeyPatch, page_env: None, blank: str, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BOTRIX_DASHBOARD_PASSWORD", blank)
    at = run_page()
    assert_no_exception(at)
    assert [e.value for e in at.error] == [
        "BOTRIX_DASHBOARD_PASSWORD is set but empty or only whitespace; set it to a password, "
        "or unset it to serve the page without one on 127.0.0.1 only"]
    assert not at.metric and not at.button  # neither the page nor a sign-in form

    for host in ("127.0.0.1", "0.0.0.0"):
        # port 0 is refused too: should the password check fail, Streamlit is never exec'd
        code = cli.main(["dashboard", "--host", host, "--port", "0",
                         "--redis-url", "redis://127.0.0.1:1/0"])
        assert code == cli.EXIT_ERROR
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "BOTRIX_DASHBOARD_PASSWORD is set but empty" in err[0]


@pytest.mark.parametrize("url", ["redis//:pw123@127.0.0.1:16402", "redis://:pw123@[::1:16402/0"])
def test_an_unusable_url_is_refused_on_the_page_with_its_password_hidden(
    monkeypatch: pytest.MonkeyPatch, page_env: None, url: str
) -> None:
    monkeypatch.setenv("BOTRIX_REDIS_URL", url)
    at = run_page()
    assert_no_exception(at)
    errors = texts(at.sidebar.error)
    assert len(errors) == 1 and "is not usable" in errors[0] and ":***@" in errors[0], errors
    assert "pw123" not in everything_rendered(at)


def test_an_empty_queue_depth_chart_has_a_zero_to_one_axis_and_steps(page_env: None, queue: QueueService) -> None:
    figure = chart_spec(run_page(), "Queue depth")
    assert figure["layout"]["yaxis"]["range"] == [0, 1]
    assert figure["layout"]["xaxis"]["tickformat"] == "%H:%M:%S"
    assert {trace["line"]["shape"] for trace in figure["data"]} == {"hv"}


def test_jobs_per_second_now_falls_to_zero_when_nothing_happens() -> None:
    start = pd.Timestamp("2026-11-29T10:00:00Z")
    rows = []
    for n in range(80):  # 8 s of 10 completions a second
        at = start + pd.Timedelta(milliseconds=100 * n)
        rows += [{"received_at": at, "timestamp": at.floor("1s"), "event": "status_updated", "job_id": f"j{n}",
                  "status": status, "priority": 1, "data": {}} for status in ("running", "completed")]
    events = pd.DataFrame(rows)
    last = start + pd.Timedelta(milliseconds=7900)
    busy = snapshot.activity(events, last + pd.Timedelta(milliseconds=50))
    assert busy.jobs_per_second > 5
    quiet_for = pd.Timedelta(seconds=snapshot.RATE_WINDOW_S + 1)
    idle = snapshot.activity(snapshot.recent_events(events, 5, last + quiet_for), last + quiet_for)
    assert idle.jobs_per_second == 0.0
    assert idle.completed_last_minute == 80  # the minute's count still shows what happened


def test_connection_problem_drops_the_repeated_server_and_the_full_stop() -> None:
    server = "redis://127.0.0.1:1/0"
    message = f"cannot reach {server}: Error 111 connecting to 127.0.0.1:1. Connection refused."
    assert snapshot.connection_problem(message, server) == "Error 111 connecting to 127.0.0.1:1. Connection refused"
    assert snapshot.connection_problem("timed out.", server) == "timed out"


def pick_job(at: AppTest, job_id: str) -> None:
    """Chooses ``job_id`` in the job picker (its options read "<id> · <where>")."""
    picker = at.selectbox(key="life_job")
    labels = list(picker.options)
    picker.select_index(next(i for i, label in enumerate(labels) if label.startswith(f"{job_id} ·"))).run()


LIFE_TABLES = {"life_events": {"event", "detail"}, "life_fields": {"field", "value"}}


def life_rows(at: AppTest, table: str) -> pd.DataFrame:
    """The job's events or fields table, found by its columns."""
    matches = [frame.value for frame in at.dataframe if LIFE_TABLES[table] <= set(frame.value.columns)]
    return matches[0] if matches else pd.DataFrame(columns=sorted(LIFE_TABLES[table]))


def test_a_jobs_whole_life_on_one_screen(page_env: None, queue: QueueService) -> None:
    at = run_page()  # starts the page's event recorder: it sees what follows
    assert_no_exception(at)
    queue.add_job({"id": "life-1", "priority": 2, "username": "ana", "password": SECRET,
                   "extra": {"nested": {"Password": SECRET}}})
    queue.add_job({"id": "life-2", "priority": 1})
    assert queue.dequeue_job().id == "life-1"
    queue.fail_job("life-1", requeue=True, error="proxy down")  # a retry, now normal priority
    assert [job.id for job in queue.dequeue_jobs(2)] == ["life-2", "life-1"]
    queue.save_job_result("life-1", {"accounts": ["a1"], "password": SECRET})
    queue.complete_job("life-1")

    def recorded_all() -> bool:
        at.run()
        if not any(label.startswith("life-1 ·") for label in at.selectbox(key="life_job").options):
            return False
        pick_job(at, "life-1")
        return len(life_rows(at, "life_events")) >= 9

    # added, claimed, failed and put back, claimed, completed: nine events
    wait_for(recorded_all, "the recorder to see life-1's nine events", timeout=30)
    assert_no_exception(at)
    shown = metrics(at)
    assert (shown["status"], shown["retries"]) == ("completed", "1")
    assert shown["started (UTC)"] != "–" and shown["ended (UTC)"] != "–"
    events = life_rows(at, "life_events")
    assert list(events["event"])[:2] == ["status_updated", "job_added"]
    assert list(events["event"])[-2:] == ["status_updated", "job_completed"]
    assert any("proxy down" in detail for detail in events["detail"])
    fields = dict(zip(*life_rows(at, "life_fields")[["field", "value"]].T.values))
    assert (fields["username"], fields["password"], fields["priority"]) == ("ana", "***", "1")
    assert '"accounts": ["a1"]' in at.code[0].value
    assert SECRET not in everything_rendered(at)


def test_the_job_picker_offers_pending_and_processing_jobs(page_env: None, queue: QueueService) -> None:
    queue.add_jobs([{"id": "held"}, {"id": "waiting"}])
    queue.dequeue_job()
    at = run_page()
    assert {"held · processing", "waiting · pending"} <= set(at.selectbox(key="life_job").options)
    pick_job(at, "waiting")
    assert_no_exception(at)
    assert metrics(at)["status"] == "pending"
    assert metrics(at)["started (UTC)"] == "–"
