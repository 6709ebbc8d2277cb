"""The fetch stage against a real server on 127.0.0.1. No traffic goes anywhere else:
refused addresses are refused before connecting, and a trace on every session fails the
test if a request is ever started for another host."""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import socket
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from httpserver import FeedServer

from monitor import __version__
from monitor.fetch import (
    ACCEPT,
    FetchOptions,
    FilteringResolver,
    IPAddress,
    address_is_public,
    fetch,
    make_session,
    parse_max_age,
    parse_retry_after,
    post,
)
from monitor.models import Feed, FetchResult, Outcome

KiB = 1024
MiB = 1024 * KiB
#: Legacy and odd spellings of 127.0.0.1 (the client must refuse them or filter them).
ODD_LOOPBACK_FORMS = ("127.1", "2130706433", "0x7f000001", "0177.0.0.1", "127.0.0.1.")
LOCAL_HOSTS = {"127.0.0.1", "localhost", *ODD_LOOPBACK_FORMS}


def only_127_0_0_1(ip: IPAddress) -> bool:
    return str(ip) == "127.0.0.1"


def options(**changes: object) -> FetchOptions:
    """Options that permit the test server (127.0.0.1 and nothing else)."""
    base: dict[str, object] = {"address_allowed": only_127_0_0_1, "deadline": 5.0}
    base.update(changes)
    return FetchOptions(**base)  # type: ignore[arg-type]


class Watch:
    """Requests started and connections opened by a session; refuses non-local hosts."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.connections = 0
        self.config = aiohttp.TraceConfig()
        self.config.on_request_start.append(self._request)
        self.config.on_connection_create_end.append(self._connection)

    async def _request(
        self, _s: object, _c: SimpleNamespace, params: aiohttp.TraceRequestStartParams
    ) -> None:
        if params.url.host not in LOCAL_HOSTS:  # a safety net, never the thing tested
            raise AssertionError(f"test tried to reach {params.url}")
        self.requests.append(str(params.url))

    async def _connection(self, *_args: object) -> None:
        self.connections += 1


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as running:
        yield running


@pytest.fixture
def watch() -> Watch:
    return Watch()


class Fetcher:
    """fetch() with a session per options, all closed at the end of the test."""

    def __init__(self, watch: Watch) -> None:
        self.watch = watch
        self.sessions: dict[FetchOptions, aiohttp.ClientSession] = {}

    async def __call__(
        self, url: str, opts: FetchOptions | None = None, **feed: object
    ) -> FetchResult:
        opts = opts or options()
        if opts not in self.sessions:
            self.sessions[opts] = make_session(opts, trace_configs=[self.watch.config])
        return await fetch(Feed(url=url, **feed), self.sessions[opts], opts)  # type: ignore[arg-type]


@pytest.fixture
async def get(watch: Watch) -> AsyncIterator[Fetcher]:
    fetcher = Fetcher(watch)
    yield fetcher
    for session in fetcher.sessions.values():
        await session.close()


# --------------------------------------------------------------------------- success


async def test_ok_captures_body_and_validators(server: FeedServer, get: Fetcher) -> None:
    server.serve(
        "/feed",
        b"<rss>hello</rss>",
        headers={
            "ETag": '"v1"',
            "Last-Modified": "Wed, 01 May 2024 10:00:00 GMT",
            "Cache-Control": "public, max-age=300",
            "Content-Type": "application/rss+xml",
        },
    )
    result = await get(server.url("/feed"))
    assert result.outcome is Outcome.OK
    assert result.status == 200
    assert result.body == b"<rss>hello</rss>"
    assert result.etag == '"v1"'
    assert result.last_modified == "Wed, 01 May 2024 10:00:00 GMT"
    assert result.max_age == 300
    assert result.headers["content-type"] == "application/rss+xml"
    assert all(name == name.lower() for name in result.headers)
    assert result.url == result.final_url == server.url("/feed")
    assert result.permanent_url is None and result.error is None
    assert 0 < result.elapsed < 5


async def test_sends_user_agent_accept_and_encodings(server: FeedServer, get: Fetcher) -> None:
    server.serve("/feed", b"x")
    await get(server.url("/feed"))
    headers = server.requests("/feed")[0].headers
    assert headers["User-Agent"].startswith(f"monitor/{__version__} ")
    assert headers["Accept"] == ACCEPT
    assert headers["Accept-Encoding"] == "gzip, deflate"
    assert "If-None-Match" not in headers and "If-Modified-Since" not in headers


async def test_conditional_get_and_304(server: FeedServer, get: Fetcher) -> None:
    async def conditional(request: web.Request) -> web.StreamResponse:
        if request.headers.get("If-None-Match") == '"v1"':
            return web.Response(status=304, headers={"ETag": '"v1"'})
        return web.Response(body=b"full body")

    server.route("/feed", conditional)
    since = "Wed, 01 May 2024 10:00:00 GMT"
    result = await get(server.url("/feed"), etag='"v1"', last_modified=since)
    sent = server.requests("/feed")[0].headers
    assert sent["If-None-Match"] == '"v1"'
    assert sent["If-Modified-Since"] == since
    assert result.outcome is Outcome.NOT_MODIFIED
    assert result.status == 304
    assert result.body == b""
    assert result.etag == '"v1"' and result.last_modified == since  # state carried over


async def test_per_feed_headers_sent_but_host_not_overridden(
    server: FeedServer, get: Fetcher
) -> None:
    server.serve("/feed", b"x")
    await get(
        server.url("/feed"),
        headers={"X-Api-Key": "k1", "Host": "evil.example", "Accept-Encoding": "br"},
    )
    sent = server.requests("/feed")[0].headers
    assert sent["X-Api-Key"] == "k1"
    assert sent["Host"] == f"127.0.0.1:{server.port}"
    assert sent["Accept-Encoding"] == "gzip, deflate"


async def test_per_feed_headers_not_sent_to_another_host(server: FeedServer, get: Fetcher) -> None:
    other = f"http://localhost:{server.port}/moved"
    server.serve("/feed", status=301, headers={"Location": other})
    server.serve("/moved", b"x")
    result = await get(server.url("/feed"), headers={"X-Api-Key": "k1"})
    assert result.outcome is Outcome.OK
    assert server.requests("/feed")[0].headers["X-Api-Key"] == "k1"
    assert "X-Api-Key" not in server.requests("/moved")[0].headers


def _gzip_members(data: bytes) -> bytes:
    half = len(data) // 2
    return gzip.compress(data[:half]) + gzip.compress(data[half:])


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("gzip", _gzip_members),
        ("deflate", zlib.compress),  # zlib-wrapped, as the RFC says
        ("deflate", _raw_deflate),  # raw, as some servers send it
    ],
)
async def test_compressed_bodies_decoded(
    server: FeedServer, get: Fetcher, encoding: str, encode: object
) -> None:
    text = b"<rss>" + b"news " * 5000 + b"</rss>"
    assert callable(encode)
    server.serve("/feed", encode(text), headers={"Content-Encoding": encoding})
    result = await get(server.url("/feed"))
    assert result.outcome is Outcome.OK, result.error
    assert result.body == text


@pytest.mark.parametrize(
    ("encoding", "body"),
    [("br", b"\x0b\x02\x80hello\x03"), ("gzip", b"definitely not gzip"), ("gzip", b"\x1f")],
)
async def test_undecodable_body(
    server: FeedServer, get: Fetcher, encoding: str, body: bytes
) -> None:
    server.serve("/feed", body, headers={"Content-Encoding": encoding})
    result = await get(server.url("/feed"))
    assert (result.outcome, result.error_kind) == (Outcome.FAILED, "decode")


async def test_truncated_gzip_is_a_decode_failure(server: FeedServer, get: Fetcher) -> None:
    server.serve("/feed", gzip.compress(b"x" * 10000)[:-12], headers={"Content-Encoding": "gzip"})
    result = await get(server.url("/feed"))
    assert result.error_kind == "decode"


# --------------------------------------------------------------------------- size caps


async def test_oversized_stream_stops_at_the_cap(server: FeedServer, get: Fetcher) -> None:
    written = [0]
    total = 100 * MiB

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # chunked: no Content-Length to refuse early
        await response.prepare(request)
        chunk = b"x" * (64 * KiB)
        try:
            while written[0] < total:
                await response.write(chunk)
                written[0] += len(chunk)
        except ConnectionError:
            pass
        return response

    server.route("/big", endless)
    started = time.monotonic()
    result = await get(server.url("/big"), options(max_body_bytes=64 * KiB))
    assert (result.outcome, result.error_kind) == (Outcome.FAILED, "too_large")
    assert result.body == b""
    assert time.monotonic() - started < 3
    await asyncio.sleep(0.2)
    assert written[0] < total // 4  # the client hung up; the server could not send it all


async def test_declared_length_over_cap_refused_early(server: FeedServer, get: Fetcher) -> None:
    async def announced(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 50 * MiB
        await response.prepare(request)
        await response.write(b"x" * KiB)
        await asyncio.sleep(10)  # would time the test out if the client waited for the rest
        return response

    server.route("/big", announced)
    result = await get(server.url("/big"), options(max_body_bytes=64 * KiB))
    assert result.error_kind == "too_large"
    assert "exceeds" in (result.error or "")


def _gzip_of_zeros(size: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(MiB)
    parts = [packer.compress(zeros) for _ in range(size // MiB)]
    return b"".join([*parts, packer.flush()])


async def test_gzip_bomb_stops_at_decoded_cap_with_bounded_memory(
    server: FeedServer, get: Fetcher
) -> None:
    bomb = _gzip_of_zeros(50 * MiB)
    assert len(bomb) < 100 * KiB
    server.serve("/bomb", bomb, headers={"Content-Encoding": "gzip"})
    opts = options(max_decoded_bytes=1 * MiB)
    tracemalloc.start()
    try:
        result = await get(server.url("/bomb"), opts)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (result.outcome, result.error_kind) == (Outcome.FAILED, "too_large")
    assert peak < 8 * MiB  # the whole 50 MiB was never held


async def test_decoded_body_exactly_at_cap_is_fine(server: FeedServer, get: Fetcher) -> None:
    server.serve("/feed", _gzip_of_zeros(MiB), headers={"Content-Encoding": "gzip"})
    result = await get(server.url("/feed"), options(max_decoded_bytes=MiB))
    assert result.outcome is Outcome.OK and len(result.body) == MiB


# --------------------------------------------------------------------------- redirects


def _chain(server: FeedServer, statuses: list[int]) -> str:
    """/r0 -> /r1 -> ... -> /end, each hop with the given status; returns the first URL."""
    for n, status in enumerate(statuses):
        target = f"/r{n + 1}" if n + 1 < len(statuses) else "/end"
        server.serve(f"/r{n}", status=status, headers={"Location": server.url(target)})
    server.serve("/end", b"<rss/>")
    return server.url("/r0")


async def test_permanent_redirect_chain_sets_permanent_url(
    server: FeedServer, get: Fetcher
) -> None:
    result = await get(_chain(server, [301, 308]))
    assert result.outcome is Outcome.OK
    assert result.final_url == result.permanent_url == server.url("/end")
    assert result.body == b"<rss/>"


@pytest.mark.parametrize("temporary", [302, 303, 307])
async def test_temporary_hop_means_no_permanent_url(
    server: FeedServer, get: Fetcher, temporary: int
) -> None:
    result = await get(_chain(server, [301, temporary, 308]))
    assert result.outcome is Outcome.OK
    assert result.final_url == server.url("/end")
    assert result.permanent_url is None


async def test_relative_location(server: FeedServer, get: Fetcher) -> None:
    server.serve("/a/feed", status=301, headers={"Location": "../b/feed"})
    server.serve("/b/feed", b"ok")
    result = await get(server.url("/a/feed"))
    assert result.body == b"ok" and result.permanent_url == server.url("/b/feed")


async def test_redirect_loop(server: FeedServer, get: Fetcher) -> None:
    server.serve("/a", status=302, headers={"Location": server.url("/b")})
    server.serve("/b", status=302, headers={"Location": server.url("/a")})
    result = await get(server.url("/a"))
    assert (result.outcome, result.error_kind) == (Outcome.FAILED, "redirect_loop")
    assert server.count() == 2


async def test_five_redirects_followed_six_refused(server: FeedServer, get: Fetcher) -> None:
    assert (await get(_chain(server, [302] * 5))).outcome is Outcome.OK
    result = await get(_chain(server, [302] * 6))
    assert (result.outcome, result.error_kind) == (Outcome.FAILED, "too_many_redirects")


async def test_redirect_without_location(server: FeedServer, get: Fetcher) -> None:
    server.serve("/a", status=302)
    assert (await get(server.url("/a"))).error_kind == "bad_redirect"


# --------------------------------------------------------------------------- deadline


async def test_slow_server_times_out(server: FeedServer, get: Fetcher) -> None:
    server.serve("/slow", b"late", delay=10)
    started = time.monotonic()
    result = await get(server.url("/slow"), options(deadline=0.5))
    assert (result.outcome, result.error_kind) == (Outcome.FAILED, "timeout")
    assert time.monotonic() - started < 2.5
    assert result.status is None


async def test_slow_drip_body_hits_the_total_deadline(server: FeedServer, get: Fetcher) -> None:
    async def drip(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        while True:  # a byte every 50 ms, forever: no read ever waits long
            await response.write(b"<")
            await asyncio.sleep(0.05)

    server.route("/drip", drip)
    started = time.monotonic()
    result = await get(server.url("/drip"), options(deadline=0.5))
    assert result.error_kind == "timeout"
    assert result.status == 200
    assert time.monotonic() - started < 2.5


# --------------------------------------------------------------------------- statuses


async def test_410_is_gone(server: FeedServer, get: Fetcher) -> None:
    server.serve("/old", status=410)
    result = await get(server.url("/old"))
    assert result.outcome is Outcome.GONE
    assert result.status == 410 and "410" in (result.error or "")


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_seconds(server: FeedServer, get: Fetcher, status: int) -> None:
    server.serve("/busy", status=status, headers={"Retry-After": "120"})
    result = await get(server.url("/busy"))
    assert result.outcome is Outcome.FAILED
    assert result.retry_after == 120
    assert result.error_kind == ("http_4xx" if status == 429 else "http_5xx")


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_http_date(server: FeedServer, get: Fetcher, status: int) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    server.serve("/busy", status=status, headers={"Retry-After": when})
    result = await get(server.url("/busy"))
    assert result.retry_after is not None and 117 <= result.retry_after <= 121


@pytest.mark.parametrize(("status", "kind"), [(500, "http_5xx"), (404, "http_4xx")])
async def test_error_statuses(server: FeedServer, get: Fetcher, status: int, kind: str) -> None:
    server.serve("/e", status=status)
    result = await get(server.url("/e"))
    assert (result.outcome, result.error_kind, result.status) == (Outcome.FAILED, kind, status)
    assert result.retry_after is None


# --------------------------------------------------------------------------- connection


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_connection_refused(get: Fetcher) -> None:
    result = await get(f"http://127.0.0.1:{_closed_port()}/feed")
    assert (result.outcome, result.error_kind) == (Outcome.FAILED, "connection")
    assert result.status is None


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://127.0.0.1/feed", "gopher://127.0.0.1/", "javascript:1"]
)
async def test_bad_scheme_makes_no_request(get: Fetcher, watch: Watch, url: str) -> None:
    result = await get(url)
    assert (result.outcome, result.error_kind) == (Outcome.FAILED, "bad_scheme")
    assert watch.requests == []


async def test_redirect_to_bad_scheme(server: FeedServer, get: Fetcher) -> None:
    server.serve("/a", status=302, headers={"Location": "file:///etc/passwd"})
    assert (await get(server.url("/a"))).error_kind == "bad_scheme"


async def test_bad_url(get: Fetcher) -> None:
    assert (await get("http://[::1/feed")).error_kind == "bad_url"


# --------------------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.2:{port}/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
        "http://[::1]:{port}/",
        "http://10.0.0.1/",
    ],
)
async def test_redirect_to_refused_address(
    server: FeedServer, get: Fetcher, watch: Watch, target: str
) -> None:
    server.serve("/feed", status=302, headers={"Location": target.format(port=server.port)})
    result = await get(server.url("/feed"))
    assert (result.outcome, result.error_kind) == (Outcome.FAILED, "refused_address")
    assert "not polled" in (result.error or "")
    assert watch.requests == [server.url("/feed")]  # the redirect was never followed
    assert watch.connections == 1
    assert server.count() == 1


async def test_direct_loopback_refused_by_default(server: FeedServer, get: Fetcher) -> None:
    server.serve("/feed", b"x")
    result = await get(server.url("/feed"), FetchOptions())
    assert (result.outcome, result.error_kind) == (Outcome.FAILED, "refused_address")
    assert server.count() == 0


async def test_name_resolving_to_loopback_refused_by_default(
    server: FeedServer, get: Fetcher, watch: Watch
) -> None:
    server.serve("/feed", b"x")
    result = await get(f"http://localhost:{server.port}/feed", FetchOptions())
    assert (result.outcome, result.error_kind) == (Outcome.FAILED, "refused_address")
    assert "localhost resolves only to refused addresses" in (result.error or "")
    assert watch.connections == 0 and server.count() == 0


async def test_name_resolving_to_allowed_address_is_fetched(
    server: FeedServer, get: Fetcher
) -> None:
    server.serve("/feed", b"x")
    result = await get(f"http://localhost:{server.port}/feed")
    assert result.outcome is Outcome.OK and server.count() == 1


@pytest.mark.parametrize("host", ODD_LOOPBACK_FORMS)
async def test_odd_ipv4_forms_never_connect(server: FeedServer, get: Fetcher, host: str) -> None:
    server.serve("/", b"x")
    result = await get(f"http://{host}:{server.port}/", FetchOptions())
    assert result.outcome is Outcome.FAILED
    assert result.error_kind in ("bad_url", "refused_address")
    assert server.count() == 0


async def test_tls_failure(server: FeedServer, get: Fetcher) -> None:
    server.serve("/", b"plain http")
    result = await get(f"https://127.0.0.1:{server.port}/")
    assert (result.outcome, result.error_kind) == (Outcome.FAILED, "tls")


class NoSuchName(AbstractResolver):
    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def close(self) -> None:
        pass


async def test_dns_failure() -> None:
    opts = options()
    connector = aiohttp.TCPConnector(resolver=FilteringResolver(opts.allows, NoSuchName()))
    async with aiohttp.ClientSession(connector=connector) as session:
        result = await fetch(Feed(url="http://feeds.invalid/rss"), session, opts)
    assert (result.outcome, result.error_kind) == (Outcome.FAILED, "dns")
    assert "feeds.invalid" in (result.error or "")


class FakeResolver(AbstractResolver):
    """Answers every name with fixed addresses; never touches DNS or the network."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host=a,
                port=port,
                family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                proto=0,
                flags=0,
            )
            for a in self.addresses
        ]

    async def close(self) -> None:
        pass


async def test_resolver_drops_refused_addresses() -> None:
    inner = FakeResolver("10.0.0.7", "192.0.2.1", "::ffff:127.0.0.1", "8.8.8.8", "2606:4700::1111")
    resolver = FilteringResolver(address_is_public, inner)
    kept = await resolver.resolve("feeds.example", 443)
    assert [r["host"] for r in kept] == ["8.8.8.8", "2606:4700::1111"]


async def test_resolver_refuses_when_nothing_is_left() -> None:
    resolver = FilteringResolver(address_is_public, FakeResolver("10.0.0.7", "fe80::1"))
    with pytest.raises(OSError, match="resolves only to refused addresses"):
        await resolver.resolve("intranet.example", 80)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("100.100.100.200", False),
        ("127.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("fd00:ec2::254", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:169.254.169.254", False),
        ("64:ff9b::a00:1", False),  # NAT64 form of 10.0.0.1
        ("2002:a00:1::", False),  # 6to4 form of 10.0.0.1
        ("0.0.0.0", False),
        ("0.1.2.3", False),
        ("::", False),
        ("224.0.0.1", False),
        ("ff02::1", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("192.0.2.1", False),
        ("8.8.8.8", True),
        ("2606:4700::1111", True),
        ("::ffff:8.8.8.8", True),
        ("64:ff9b::808:808", True),  # NAT64 form of 8.8.8.8
    ],
)
def test_address_is_public(address: str, public: bool) -> None:
    assert address_is_public(ipaddress.ip_address(address)) is public


def test_allow_private_addresses_still_refuses_metadata() -> None:
    opts = FetchOptions(allow_private_addresses=True)
    ip = ipaddress.ip_address
    assert opts.allows(ip("10.0.0.1")) and opts.allows(ip("127.0.0.1"))
    assert opts.allows(ip("8.8.8.8"))
    for refused in ("169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254", "0.0.0.0"):
        assert not opts.allows(ip(refused)), refused
    assert not FetchOptions().allows(ip("10.0.0.1"))


# --------------------------------------------------------------------------- concurrency


async def test_per_host_limit(server: FeedServer, get: Fetcher) -> None:
    server.serve("/feed", b"x", delay=0.05)
    opts = options(max_per_host=2, max_connections=100)
    results = await asyncio.gather(*(get(server.url("/feed"), opts) for _ in range(20)))
    assert all(r.outcome is Outcome.OK for r in results)
    assert server.count() == 20
    assert server.max_in_flight() == 2


async def test_global_limit(server: FeedServer, get: Fetcher) -> None:
    server.serve("/feed", b"x", delay=0.05)
    opts = options(max_per_host=0, max_connections=3)
    results = await asyncio.gather(*(get(server.url("/feed"), opts) for _ in range(20)))
    assert all(r.outcome is Outcome.OK for r in results)
    assert server.max_in_flight() == 3


# --------------------------------------------------------------------------- header facts


def test_parse_retry_after() -> None:
    assert parse_retry_after("120") == 120
    assert parse_retry_after(" 0 ") == 0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") is None
    date = "Wed, 01 May 2024 10:00:00 GMT"
    assert parse_retry_after("Wed, 01 May 2024 10:02:00 GMT", date) == 120
    assert parse_retry_after("Wed, 01 May 2024 09:00:00 GMT", date) == 0


def test_parse_max_age() -> None:
    assert parse_max_age("public, max-age=300") == 300
    assert parse_max_age('max-age="60", must-revalidate') == 60
    assert parse_max_age("s-maxage=100") is None
    assert parse_max_age("no-cache") is None
    assert parse_max_age(None) is None


# --------------------------------------------------------------------------- post


async def test_post_sends_the_body_and_follows_307_with_it(
    server: FeedServer, watch: Watch
) -> None:
    got: list[bytes] = []

    async def receive(request: web.Request) -> web.Response:
        got.append(await request.read())
        return web.Response(status=202, text="queued")

    server.serve("/old", status=307, headers={"Location": "/new"})
    server.route("/new", receive)
    session = make_session(options(), trace_configs=[watch.config])
    try:
        result = await post(server.url("/old"), b'{"a":1}', {"X-Test": "1"}, session, options())
    finally:
        await session.close()
    assert (result.ok, result.status, result.reply, got) == (True, 202, b"queued", [b'{"a":1}'])
    assert [r.method for r in server.requests()] == ["POST", "POST"]
    assert server.requests("/new")[0].headers["X-Test"] == "1"


@pytest.mark.parametrize(
    ("status", "location", "kind"),
    [
        (308, "http://10.0.0.1/steal", "refused_address"),
        (307, "http://169.254.169.254/latest/meta-data", "refused_address"),
        (302, "/elsewhere", "bad_redirect"),
    ],
)
async def test_post_never_follows_a_redirect_to_a_refused_address_or_as_a_get(
    server: FeedServer, watch: Watch, status: int, location: str, kind: str
) -> None:
    server.serve("/hook", status=status, headers={"Location": location})
    session = make_session(options(), trace_configs=[watch.config])
    try:
        result = await post(server.url("/hook"), b"{}", {}, session, options())
    finally:
        await session.close()
    assert (result.ok, result.error_kind) == (False, kind)
    assert watch.requests == [server.url("/hook")] and server.count() == 1


async def test_post_deadline_and_status(server: FeedServer) -> None:
    server.serve("/slow", "late", delay=3.0)
    server.serve("/full", "busy", status=503, headers={"Retry-After": "120"})
    opts = options(deadline=0.5)
    session = make_session(opts)
    try:
        slow = await post(server.url("/slow"), b"{}", {}, session, opts)
        full = await post(server.url("/full"), b"{}", {}, session, opts)
    finally:
        await session.close()
    assert (slow.error_kind, slow.error) == ("timeout", "no complete response within 0.5 s")
    assert (full.ok, full.status, full.error_kind, full.retry_after) == (
        False, 503, "http_5xx", 120.0,
    )  # fmt: skip
