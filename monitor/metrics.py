"""The optional Prometheus endpoint (``[metrics] listen = "127.0.0.1:9464"``; off by default).

Counters are fed by the daemon from what the pipeline returns (a poll's
:class:`~monitor.pipeline.PollSummary`, a digest run's count of sent mail); no stage
imports this module. The outbox gauges are read from the database when scraped, so they
are right even after a restart. Needs the ``metrics`` extra: ``pip install 'monitor[metrics]'``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from monitor.errors import ConfigError

log = logging.getLogger(__name__)

#: Buckets of the fetch latency histogram, seconds.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class OutboxFigures(NamedTuple):
    """One kind's outbox rows: queued, the oldest queued one's time, failed, sent."""

    queued: int
    oldest_queued_at: datetime | None
    failed: int
    sent: int


class OutboxProbe:
    """What the outbox gauges need, per kind (``mail``, ``webhook``)."""

    def __init__(self, read: Callable[[], Mapping[str, OutboxFigures]]) -> None:
        self.read = read


class StoriesProbe:
    """What the story gauges need: stories today and the 7-day mean items per story."""

    def __init__(self, read: Callable[[], tuple[int, float | None]]) -> None:
        self.read = read


class Metrics:
    """The registry and its metrics; :meth:`serve` starts the HTTP endpoint."""

    def __init__(
        self, outbox: OutboxProbe | None = None, stories: StoriesProbe | None = None
    ) -> None:
        try:
            import prometheus_client as prom
        except ImportError:
            raise ConfigError(
                "[metrics] listen is set but prometheus_client is not installed",
                hint="pip install 'monitor[metrics]', or remove [metrics] listen",
            ) from None
        self._prom = prom
        self.registry = prom.CollectorRegistry(auto_describe=True)
        r = self.registry
        self.poll_cycles = prom.Counter("monitor_poll_cycles", "Poll cycles completed", registry=r)
        self.feed_polls = prom.Counter(
            "monitor_feed_polls", "Feed polls by outcome", ["outcome"], registry=r
        )
        self.fetch_failures = prom.Counter(
            "monitor_fetch_failures", "Failed fetches by reason", ["reason"], registry=r
        )
        self.fetch_latency = prom.Histogram(
            "monitor_fetch_duration_seconds",
            "Time from request to last byte of fetches that got a response",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.new_items = prom.Counter(
            "monitor_new_items", "Items stored for the first time", registry=r
        )
        self.hits = prom.Counter(
            "monitor_hits", "Hits stored, by watchlist", ["watchlist"], registry=r
        )
        self.digests_sent = prom.Counter(
            "monitor_digests_sent", "Digests accepted by the mail server", registry=r
        )
        self.webhooks_sent = prom.Counter(
            "monitor_webhook_deliveries_sent",
            "Webhook deliveries accepted by their receivers",
            registry=r,
        )
        self.last_cycle = prom.Gauge(
            "monitor_last_poll_cycle_timestamp_seconds",
            "When the last poll cycle ended",
            registry=r,
        )
        if outbox is not None:
            r.register(_OutboxCollector(prom, outbox))
        if stories is not None:
            r.register(_StoriesCollector(stories))
        self._server: Any = None
        self._thread: Any = None

    def observe_poll(
        self,
        *,
        fetched: int,
        not_modified: int,
        failed: int,
        failure_kinds: Mapping[str, int],
        latencies: Sequence[float],
        new_items: int,
        hits_by_watchlist: Mapping[str, int],
    ) -> None:
        self.poll_cycles.inc()
        for outcome, n in (
            ("fetched", fetched),
            ("not_modified", not_modified),
            ("failed", failed),
        ):
            if n:
                self.feed_polls.labels(outcome).inc(n)
        for reason, n in failure_kinds.items():
            self.fetch_failures.labels(reason).inc(n)
        for seconds in latencies:
            self.fetch_latency.observe(seconds)
        if new_items:
            self.new_items.inc(new_items)
        for watchlist, n in hits_by_watchlist.items():
            self.hits.labels(watchlist).inc(n)
        self.last_cycle.set(datetime.now(UTC).timestamp())

    def observe_digests(self, sent: int, webhooks_sent: int = 0) -> None:
        if sent:
            self.digests_sent.inc(sent)
        if webhooks_sent:
            self.webhooks_sent.inc(webhooks_sent)

    def render(self) -> bytes:
        """The exposition text (what /metrics serves)."""
        data: bytes = self._prom.generate_latest(self.registry)
        return data

    def serve(self, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        try:
            self._server, self._thread = self._prom.start_http_server(
                int(port), addr=host, registry=self.registry
            )
        except OSError as exc:
            raise ConfigError(
                f"[metrics] listen = {listen!r}: cannot listen: {exc.strerror}"
            ) from None
        log.info("metrics on http://%s:%s/metrics", host, port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _StoriesCollector:
    """Stories today and their mean size over 7 days, read at scrape time."""

    def __init__(self, probe: StoriesProbe) -> None:
        self._probe = probe

    def describe(self) -> Iterator[Any]:
        return iter(())

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        try:
            today, mean = self._probe.read()
        except Exception as exc:  # a scrape must not break on a busy database
            log.warning("metrics: cannot read the stories: %s", exc)
            return
        yield GaugeMetricFamily(
            "monitor_stories_today", "Stories first seen since 00:00 UTC", value=today
        )
        yield GaugeMetricFamily(
            "monitor_story_items_mean_7d",
            "Mean items per story over the stories of the last 7 days",
            value=mean or 0.0,
        )


class _OutboxCollector:
    """Per kind (mail, webhook): outbox depth, the age of its oldest message, failed and
    sent rows; read at scrape time."""

    def __init__(self, prom: Any, probe: OutboxProbe) -> None:
        self._prom = prom
        self._probe = probe

    def describe(self) -> Iterator[Any]:
        return iter(())

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        try:
            by_kind = self._probe.read()
        except Exception as exc:  # a scrape must not break on a busy database
            log.warning("metrics: cannot read the outbox: %s", exc)
            return
        queued = GaugeMetricFamily(
            "monitor_outbox_queued", "Messages waiting to be sent, by kind", labels=["kind"]
        )
        age = GaugeMetricFamily(
            "monitor_outbox_oldest_age_seconds",
            "Age of the oldest queued message, by kind",
            labels=["kind"],
        )
        failed = GaugeMetricFamily(
            "monitor_outbox_failed",
            "Messages that failed for good (see `monitor outbox`), by kind",
            labels=["kind"],
        )
        sent = GaugeMetricFamily(
            "monitor_outbox_sent", "Messages accepted, all time, by kind", labels=["kind"]
        )
        now = datetime.now(UTC)
        for kind, f in sorted(by_kind.items()):
            queued.add_metric([kind], f.queued)
            oldest = f.oldest_queued_at
            age.add_metric([kind], (now - oldest).total_seconds() if oldest else 0.0)
            failed.add_metric([kind], f.failed)
            sent.add_metric([kind], f.sent)
        yield from (queued, age, failed, sent)
