"""Event time: the client's timestamp, corrected for clock skew with `sent_at`, or `offset`."""

from datetime import UTC, datetime, timedelta

import pytest

from tests.events.helpers import event, iso, stored_events


def utcnow() -> datetime:
    return datetime.now(UTC)


async def send_and_window(capture, body):
    """Send, and return the server clock's bounds while the request ran."""
    before = utcnow()
    response = await capture(body)
    after = utcnow()
    assert response.status_code == 200
    return before, after


class TestClientTimestamps:
    async def test_timestamp_without_sent_at_is_kept(self, capture, kit, app):
        moment = datetime(2026, 3, 1, 12, 30, 15, 250000, tzinfo=UTC)
        assert (await capture({"batch": [event("a", timestamp=iso(moment))]})).status_code == 200
        [row] = await stored_events(app, kit.project_id)
        assert row.timestamp == moment

    async def test_timestamp_with_offset_is_converted_to_utc(self, capture, kit, app):
        assert (await capture({"batch": [event("a", timestamp="2026-03-01T14:30:00+02:00")]})).status_code == 200
        [row] = await stored_events(app, kit.project_id)
        assert row.timestamp == datetime(2026, 3, 1, 12, 30, tzinfo=UTC)

    async def test_naive_and_z_suffixed_timestamps_are_utc(self, capture, kit, app):
        batch = [event("naive", timestamp="2026-03-01T12:00:00"), event("zulu", timestamp="2026-03-01T12:00:00Z")]
        assert (await capture({"batch": batch})).status_code == 200
        stored = await stored_events(app, kit.project_id)
        assert [row.timestamp for row in stored] == [datetime(2026, 3, 1, 12, tzinfo=UTC)] * 2

    @pytest.mark.parametrize("epoch", [1772368200, 1772368200000, "1772368200000", 1772368200.0])
    async def test_epoch_seconds_or_milliseconds(self, capture, kit, app, epoch):
        assert (await capture({"batch": [event("a", timestamp=epoch)]})).status_code == 200
        [row] = await stored_events(app, kit.project_id)
        assert row.timestamp == datetime(2026, 3, 1, 12, 30, tzinfo=UTC)

    async def test_no_timestamp_means_now(self, capture, kit, app):
        before, after = await send_and_window(capture, {"batch": [event("a")]})
        [row] = await stored_events(app, kit.project_id)
        assert before <= row.timestamp <= after


class TestClockSkew:
    async def test_sent_at_shifts_the_timestamp_onto_the_server_clock(self, capture, kit, app):
        # The client clock runs 3 days behind; the event happened 90 seconds before sending.
        client_sent_at = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
        client_timestamp = client_sent_at - timedelta(seconds=90)
        body = {"sent_at": iso(client_sent_at), "batch": [event("a", timestamp=iso(client_timestamp))]}
        before, after = await send_and_window(capture, body)
        [row] = await stored_events(app, kit.project_id)
        assert before - timedelta(seconds=90) <= row.timestamp <= after - timedelta(seconds=90)

    async def test_sent_at_as_posthog_js_query_millis(self, client, kit, app):
        client_sent_at = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
        millis = int(client_sent_at.timestamp() * 1000)
        sent = event("a", timestamp=iso(client_sent_at - timedelta(seconds=30)))
        before = utcnow()
        response = await client.post(f"/e/?_={millis}", json={"token": kit.project_api_key, **sent})
        after = utcnow()
        assert response.status_code == 200
        [row] = await stored_events(app, kit.project_id)
        assert before - timedelta(seconds=30) <= row.timestamp <= after - timedelta(seconds=30)

    async def test_ignore_sent_at_property_keeps_the_raw_timestamp(self, capture, kit, app):
        moment = datetime(2025, 6, 1, tzinfo=UTC)
        body = {
            "sent_at": iso(datetime(2026, 1, 1, tzinfo=UTC)),
            "batch": [event("a", timestamp=iso(moment), properties={"$ignore_sent_at": True})],
        }
        assert (await capture(body)).status_code == 200
        [row] = await stored_events(app, kit.project_id)
        assert row.timestamp == moment

    async def test_offset_is_milliseconds_before_now(self, capture, kit, app):
        before, after = await send_and_window(capture, {"batch": [event("a", offset=5000)]})
        [row] = await stored_events(app, kit.project_id)
        assert before - timedelta(seconds=5) <= row.timestamp <= after - timedelta(seconds=5)

    async def test_timestamp_wins_over_offset(self, capture, kit, app):
        moment = datetime(2026, 2, 2, tzinfo=UTC)
        assert (await capture({"batch": [event("a", timestamp=iso(moment), offset=5000)]})).status_code == 200
        [row] = await stored_events(app, kit.project_id)
        assert row.timestamp == moment


class TestFutureTimestamps:
    async def test_more_than_23_hours_ahead_is_dropped(self, capture, kit, app):
        batch = [
            event("too-far", timestamp=iso(utcnow() + timedelta(hours=24))),
            event("near", timestamp=iso(utcnow() + timedelta(hours=22))),
        ]
        assert (await capture({"batch": batch})).status_code == 200
        assert [row.event for row in await stored_events(app, kit.project_id)] == ["near"]

    async def test_future_client_clock_is_corrected_before_the_check(self, capture, kit, app):
        # The client clock runs two days ahead: once skew is removed the event is a minute old.
        client_sent_at = utcnow() + timedelta(days=2)
        body = {"sent_at": iso(client_sent_at), "batch": [event("a", timestamp=iso(client_sent_at - timedelta(minutes=1)))]}
        before, after = await send_and_window(capture, body)
        [row] = await stored_events(app, kit.project_id)
        assert before - timedelta(minutes=1) <= row.timestamp <= after - timedelta(minutes=1)

    async def test_negative_offset_into_the_far_future_is_dropped(self, capture, kit, app):
        batch = [event("ahead", offset=-int(timedelta(hours=30).total_seconds() * 1000)), event("now")]
        assert (await capture({"batch": batch})).status_code == 200
        assert [row.event for row in await stored_events(app, kit.project_id)] == ["now"]

    async def test_corrections_beyond_the_calendar_are_dropped(self, capture, kit, app):
        body = {
            "sent_at": "9999-12-31T00:00:00Z",
            "batch": [
                event("ancient", timestamp="0001-01-01T00:00:00Z"),
                event("huge-offset", offset=2**62),
                event("good", timestamp="9999-12-30T23:59:00Z"),
            ],
        }
        assert (await capture(body)).status_code == 200
        assert [row.event for row in await stored_events(app, kit.project_id)] == ["good"]

    @pytest.mark.parametrize("timestamp", ["not a date", "2026-13-45T00:00:00Z", "10**400", 10**30])
    async def test_unparsable_timestamps_are_dropped(self, capture, kit, app, timestamp):
        batch = [event("bad", timestamp=timestamp), event("good")]
        assert (await capture({"batch": batch})).status_code == 200
        assert [row.event for row in await stored_events(app, kit.project_id)] == ["good"]
