"""The loopback load benchmarks, tiny: they must keep running and keep counting right.

Each runs for real (``aitl web --workers 2`` in its own processes, the load from this
process, signed requests) on the test's database, and every count is checked exactly;
speed is left to the benchmarks themselves.
"""

from __future__ import annotations

from benchmarks import slack_clicks, webhooks


def test_webhook_benchmark_stores_each_event_once_with_its_job(database_url: str) -> None:
    args = webhooks.parse_args(["--tickets", "24", "--dup-share", "0.5", "--concurrency", "4"])

    figures = webhooks.bench(args, database_url)

    assert figures["deliveries_sent"] == figures["acked_2xx"] == 24 + 12
    assert figures["events_acked"] == figures["events_stored"] == 24
    assert figures["duplicates_suppressed"] == 12  # no answer was lost: one per copy
    assert figures["events_with_job"] == figures["event_jobs_queued"] == 24
    assert (figures["lost"], figures["events_never_acked"], figures["duplicated"]) == (0, 0, 0)
    assert set(figures["statuses"]) <= {200, 409}  # 409: a copy signed in the same second


def test_click_benchmark_stores_each_acknowledged_click_once(database_url: str) -> None:
    args = slack_clicks.parse_args(
        ["--clicks", "80", "--cards", "4", "--agents", "2", "--concurrency", "4"]
    )

    figures = slack_clicks.bench(args, database_url)

    assert figures["clicks_sent"] == figures["acked_200"] == figures["events_stored"] == 80
    assert (figures["lost"], figures["duplicated"], figures["retried"]) == (0, 0, 0)
    assert figures["statuses"] == {200: 80}
    assert figures["refresh_jobs_queued"] == 4  # one per card: no worker runs, they coalesce
