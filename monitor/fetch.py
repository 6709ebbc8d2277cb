"""The fetch stage: one HTTP GET of one feed, with every limit applied, as a FetchResult.

``fetch`` never raises for network or HTTP trouble: a failure is a :class:`FetchResult`
with outcome FAILED (or GONE for 410), a human ``error`` and a short ``error_kind``:

    bad_url, bad_scheme, refused_address, dns, connection, tls, timeout, too_large,
    decode, protocol, bad_redirect, redirect_loop, too_many_redirects,
    http_4xx, http_5xx, http_status

Limits: one deadline for the whole fetch (every redirect hop and the body read), a cap
on the bytes received and another on the bytes after decompression (we decompress
ourselves, so a gzip bomb stops at the cap), at most ``max_redirects`` hops, and a
connection pool bounded globally and per host.

Addresses: :func:`make_session` installs a resolver that drops every resolved address
the options refuse, so the check applies to the address actually connected to, on every
hop, with no gap for DNS rebinding. URLs with a literal IP address never reach a resolver;
``fetch`` checks those itself before each request. Sessions not made by
:func:`make_session` get the literal-IP check only.

The client is aiohttp rather than httpx: httpx's pool slows sharply with many requests in
flight (encode/httpx#3215).
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import logging
import re
import socket
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from monitor import __version__
from monitor.models import Feed, FetchResult, Outcome

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MiB = 1024 * 1024

USER_AGENT = f"monitor/{__version__} (self-hosted media monitoring; polls feeds politely)"

ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, "
    "application/xml;q=0.9, */*;q=0.5"
)

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
PERMANENT_REDIRECTS = frozenset({301, 308})
RETRY_AFTER_STATUSES = frozenset({429, 503})

#: Request headers a feed's own ``headers`` may not set: they belong to the connection,
#: to the body encodings we can decode, or to the conditional GET state.
PROTECTED_HEADERS = frozenset(
    {
        "host",
        "accept-encoding",
        "connection",
        "content-length",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "if-none-match",
        "if-modified-since",
    }
)

_CHUNK = 64 * 1024


# --------------------------------------------------------------------------- addresses

#: Cloud metadata endpoints. Refused even when private addresses are allowed.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, ...
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure host agent (a public address, reachable only from inside)
        "192.0.0.192",  # Oracle Cloud
    )
)

# Written out rather than left to ``ipaddress.is_global`` alone, whose tables differ
# between Python releases. Both are applied.
_REFUSED_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network", includes 0.0.0.0
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, includes 255.255.255.255
        "::/128",
        "::1/128",
        "::/96",  # IPv4-compatible (deprecated)
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard
        "2001::/23",  # IETF protocol assignments, includes Teredo
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, 6to4), if any."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def address_is_public(ip: IPAddress) -> bool:
    """True for an address on the public internet; False for loopback, private, link-local,
    CGNAT, cloud metadata, unspecified, multicast, reserved and documentation ranges, and
    for IPv6 forms (IPv4-mapped, NAT64, 6to4) of any refused IPv4 address."""
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        return address_is_public(embedded)
    if ip in METADATA_ADDRESSES or any(ip in net for net in _REFUSED_NETWORKS):
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return False
    return ip.is_global and not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def _never_allowed(ip: IPAddress) -> bool:
    """Addresses no feed lives at, private networks allowed or not."""
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        return _never_allowed(embedded)
    return ip in METADATA_ADDRESSES or ip.is_unspecified or ip.is_multicast


_NUMERIC_HOST = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}\.?", re.I)


def legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a legacy numeric host stands for (``2130706433``, ``127.1``,
    ``0177.0.0.1``, ``0x7f.1``: forms inet_aton(3) accepts), None for anything else,
    including a dotted quad in its canonical form."""
    if not _NUMERIC_HOST.fullmatch(host) or _parse_ip(host.rstrip(".")) is not None:
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host.rstrip(".")))
    except (OSError, ValueError):
        return None


def _parse_ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class FetchOptions:
    """How every fetch of a run behaves. One instance per run, shared by all fetches."""

    #: Seconds for the whole fetch: every hop and the body. It includes any wait for a free
    #: connection, so callers should not start far more fetches than ``max_connections``.
    deadline: float = 30.0
    connect_timeout: float = 10.0  # seconds to open one connection (within the deadline)
    max_body_bytes: int = 10 * MiB  # bytes received, before decompression
    max_decoded_bytes: int = 32 * MiB  # bytes after gzip/deflate decompression
    max_redirects: int = 5
    user_agent: str = USER_AGENT
    accept: str = ACCEPT  # the Accept header (feeds by default; article pages ask for HTML)
    max_connections: int = 100  # open connections, all hosts together
    max_per_host: int = 2  # open connections to one host (0: no limit)
    allow_private_addresses: bool = False
    #: Decides alone when given (tests); None: :func:`address_is_public`, widened to private
    #: networks by ``allow_private_addresses`` (metadata, multicast and 0.0.0.0 stay refused).
    address_allowed: Callable[[IPAddress], bool] | None = field(default=None, compare=False)
    #: What is done with the URLs, as an address refusal says it ("10.0.0.1 is a private,
    #: loopback or link-local address, which is not polled"); webhooks: "posted to".
    action: str = "polled"

    def allows(self, ip: IPAddress) -> bool:
        """Whether a connection to ``ip`` is permitted."""
        if self.address_allowed is not None:
            return self.address_allowed(ip)
        if self.allow_private_addresses:
            return not _never_allowed(ip)
        return address_is_public(ip)


# --------------------------------------------------------------------------- session


class AddressRefusedError(OSError):
    """Every address a host name resolved to was refused. Raised inside the resolver."""


class FilteringResolver(AbstractResolver):
    """Resolves with ``inner`` (aiohttp's default resolver) and drops refused addresses."""

    def __init__(
        self,
        allowed: Callable[[IPAddress], bool],
        inner: AbstractResolver | None = None,
        *,
        action: str = "polled",
    ) -> None:
        self._allowed = allowed
        self._action = action
        self._inner: AbstractResolver = inner if inner is not None else aiohttp.DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        kept = [r for r in results if self._permits(r["host"])]
        if not kept:
            addresses = ", ".join(sorted({r["host"] for r in results})) or "nothing"
            raise AddressRefusedError(
                f"{host} resolves only to refused addresses ({addresses}); "
                f"private, loopback and link-local addresses are not {self._action}"
            )
        return kept

    def _permits(self, text: str) -> bool:
        ip = _parse_ip(text)
        return ip is not None and self._allowed(ip)

    async def close(self) -> None:
        await self._inner.close()


def make_session(
    options: FetchOptions, *, trace_configs: list[aiohttp.TraceConfig] | None = None
) -> aiohttp.ClientSession:
    """The one HTTP session of a run. Call inside the running event loop; close it after.

    ``trace_configs`` lets callers observe requests and connections (metrics, tests)."""
    connector = aiohttp.TCPConnector(
        limit=options.max_connections,
        limit_per_host=options.max_per_host,
        resolver=FilteringResolver(options.allows, action=options.action),
    )
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        timeout=aiohttp.ClientTimeout(total=None, connect=options.connect_timeout),
        headers={"User-Agent": options.user_agent},
        trust_env=False,  # a proxy would connect for us, past the address check
        trace_configs=trace_configs,
    )


# --------------------------------------------------------------------------- fetch


class _Failure(Exception):
    """A fetch failure found mid-way; turned into a FetchResult by ``fetch``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class _Progress:
    """Where a fetch has got to, so a timeout can still say which URL it was on."""

    url: URL
    status: int | None = None
    permanent: bool = True  # every redirect so far was 301/308
    hops: int = 0


async def fetch(feed: Feed, session: aiohttp.ClientSession, options: FetchOptions) -> FetchResult:
    """GET ``feed.url`` (conditionally) and report what happened. Never raises for network
    or HTTP failures; cancellation propagates."""
    started = time.monotonic()
    progress: _Progress | None = None
    try:
        progress = _Progress(url=_parse_url(feed.url))
        async with asyncio.timeout(options.deadline):
            result = await _follow(feed, session, options, progress, started)
    except _Failure as failure:
        result = _failed(feed, progress, failure.kind, str(failure), started)
    except TimeoutError as exc:
        if isinstance(exc, aiohttp.ServerTimeoutError):  # the connect timeout
            message = str(exc) or f"no connection within {options.connect_timeout:g} s"
        else:
            message = f"no complete response within {options.deadline:g} s"
        result = _failed(feed, progress, "timeout", message, started)
    except aiohttp.ClientError as exc:
        kind, message = _describe_client_error(exc)
        result = _failed(feed, progress, kind, message, started)
    except OSError as exc:
        result = _failed(feed, progress, "connection", str(exc) or type(exc).__name__, started)
    log.debug(
        "fetch %s: %s status=%s kind=%s %.3fs",
        feed.url,
        result.outcome.value,
        result.status,
        result.error_kind,
        result.elapsed,
    )
    return result


def _parse_url(text: str) -> URL:
    try:
        url = URL(text)
    except (ValueError, UnicodeError) as exc:
        raise _Failure("bad_url", f"not a valid URL: {text!r} ({exc})") from exc
    return url.with_fragment(None)


def _check_target(url: URL, options: FetchOptions, method: str) -> None:
    """Refuse a URL before any request: wrong scheme, no host, or a refused literal IP.
    ``method`` says what a request does ("fetched", "posted to"), ``options.action`` what
    a refused address is not."""
    if url.scheme not in ("http", "https"):
        raise _Failure("bad_scheme", f"only http and https URLs are {method}, not {url.scheme!r}")
    host = url.raw_host
    if not host:
        raise _Failure("bad_url", f"no host in URL {str(url)!r}")
    ip = _parse_ip(host)
    if ip is not None and not options.allows(ip):
        raise _Failure(
            "refused_address",
            f"{host} is a private, loopback or link-local address, which is not {options.action}",
        )
    legacy = legacy_ipv4(host) if ip is None else None
    if legacy is not None:
        if not options.allows(legacy):
            raise _Failure(
                "refused_address",
                f"{host} is {legacy} written as a number: a private, loopback or "
                f"link-local address, which is not {options.action}",
            )
        raise _Failure(
            "bad_url", f"{host} is {legacy} written as a number; write the address as {legacy}"
        )


def _request_headers(feed: Feed, url: URL, options: FetchOptions) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    headers["User-Agent"] = options.user_agent
    headers["Accept"] = options.accept
    if _same_site(URL(feed.url), url):
        for name, value in feed.headers.items():
            if _header_ok(name, value):
                headers[name] = value
            else:
                log.warning("feed %s: request header %r ignored", feed.url, name)
    headers["Accept-Encoding"] = "gzip, deflate"
    if feed.etag:
        headers["If-None-Match"] = feed.etag
    if feed.last_modified:
        headers["If-Modified-Since"] = feed.last_modified
    return headers


def _same_site(origin: URL, url: URL) -> bool:
    """A feed's own headers (maybe credentials) go to its host only, never downgraded."""
    downgrade = origin.scheme == "https" and url.scheme != "https"
    return origin.raw_host == url.raw_host and not downgrade


_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def _header_ok(name: str, value: str) -> bool:
    return (
        bool(_TOKEN.match(name))
        and name.lower() not in PROTECTED_HEADERS
        and not any(c in value for c in "\r\n\0")
    )


async def _follow(
    feed: Feed,
    session: aiohttp.ClientSession,
    options: FetchOptions,
    progress: _Progress,
    started: float,
) -> FetchResult:
    seen = {progress.url}
    while True:
        url = progress.url
        _check_target(url, options, "fetched")
        async with session.get(
            url,
            headers=_request_headers(feed, url, options),
            allow_redirects=False,
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, connect=options.connect_timeout),
        ) as response:
            progress.status = response.status
            if response.status not in REDIRECT_STATUSES:
                return await _conclude(feed, response, options, progress, started)
            target = _redirect_target(response)
        progress.permanent = progress.permanent and response.status in PERMANENT_REDIRECTS
        _hop(progress, seen, target, options)


def _hop(progress: _Progress, seen: set[URL], target: URL, options: FetchOptions) -> None:
    """Follow one redirect to ``target``: refused when it loops or one hop too many."""
    if target in seen:
        raise _Failure("redirect_loop", f"redirect loop: {progress.url} -> {target}")
    if progress.hops >= options.max_redirects:
        raise _Failure("too_many_redirects", f"more than {options.max_redirects} redirects")
    seen.add(target)
    progress.hops += 1
    progress.url = target


def _redirect_target(response: aiohttp.ClientResponse) -> URL:
    location = response.headers.get("Location")
    if not location:
        raise _Failure("bad_redirect", f"HTTP {response.status} without a Location header")
    try:
        return response.url.join(URL(location)).with_fragment(None)
    except (ValueError, UnicodeError) as exc:
        raise _Failure("bad_redirect", f"unusable Location {location!r} ({exc})") from exc


async def _conclude(
    feed: Feed,
    response: aiohttp.ClientResponse,
    options: FetchOptions,
    progress: _Progress,
    started: float,
) -> FetchResult:
    """The result for a final (non-redirect) response."""
    status = response.status
    headers = _lower_headers(response.headers)
    base = FetchResult(
        outcome=Outcome.FAILED,
        url=feed.url,
        final_url=str(response.url),
        status=status,
        headers=headers,
        max_age=parse_max_age(headers.get("cache-control")),
    )
    if 200 <= status < 300 or status == 304:
        not_modified = status == 304
        body = b"" if not_modified else await _read_body(response, options)
        moved = progress.hops > 0 and progress.permanent
        return replace(
            base,
            outcome=Outcome.NOT_MODIFIED if not_modified else Outcome.OK,
            body=body,
            etag=headers.get("etag") or (feed.etag if not_modified else None),
            last_modified=headers.get("last-modified")
            or (feed.last_modified if not_modified else None),
            permanent_url=str(response.url) if moved else None,
            elapsed=time.monotonic() - started,
        )
    reason = f"HTTP {status} {response.reason or ''}".strip()
    if status == 410:
        return replace(
            base,
            outcome=Outcome.GONE,
            error=f"{reason}: the feed has been retired",
            error_kind="http_4xx",
            elapsed=time.monotonic() - started,
        )
    retry_after = None
    if status in RETRY_AFTER_STATUSES:
        retry_after = parse_retry_after(headers.get("retry-after"), headers.get("date"))
    return replace(
        base,
        error=reason,
        error_kind=_status_kind(status),
        retry_after=retry_after,
        elapsed=time.monotonic() - started,
    )


def _status_kind(status: int) -> str:
    if 400 <= status < 500:
        return "http_4xx"
    if 500 <= status < 600:
        return "http_5xx"
    return "http_status"


def _lower_headers(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    """Response headers with lower-cased names; repeated headers joined with ', '."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def _failed(
    feed: Feed, progress: _Progress | None, kind: str, message: str, started: float
) -> FetchResult:
    return FetchResult(
        outcome=Outcome.FAILED,
        url=feed.url,
        final_url=str(progress.url) if progress else feed.url,
        status=progress.status if progress else None,
        error=message,
        error_kind=kind,
        elapsed=time.monotonic() - started,
    )


def _describe_client_error(exc: aiohttp.ClientError) -> tuple[str, str]:
    """error_kind and message for an aiohttp exception."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        if isinstance(exc.os_error, AddressRefusedError):
            return "refused_address", str(exc.os_error)
        return "dns", f"cannot resolve {exc.host}: {exc.os_error}"
    if isinstance(exc, aiohttp.ClientSSLError | aiohttp.ServerFingerprintMismatch):
        return "tls", str(exc)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connection", f"cannot connect to {exc.host}:{exc.port}: {exc.os_error}"
    if isinstance(exc, aiohttp.InvalidURL):
        return "bad_url", str(exc)
    if isinstance(exc, aiohttp.ClientResponseError):
        return "protocol", f"malformed response: {exc.message}"
    return "connection", str(exc) or type(exc).__name__


# --------------------------------------------------------------------------- body


async def _read_body(response: aiohttp.ClientResponse, options: FetchOptions) -> bytes:
    """The body, decoded, within both caps; the connection is dropped on the first excess."""
    limit = options.max_body_bytes
    declared = response.content_length
    if declared is not None and declared > limit:
        response.close()
        raise _Failure("too_large", f"body of {declared} bytes exceeds the {limit}-byte cap")
    decoder = _Decoder(response.headers.get("Content-Encoding", ""), options.max_decoded_bytes)
    # BytesIO, not bytearray: getvalue() hands over its buffer without a copy, so a large
    # body is held once, not twice, when it is done.
    body = io.BytesIO()
    received = 0
    try:
        async for chunk in response.content.iter_chunked(_CHUNK):
            received += len(chunk)
            if received > limit:
                raise _Failure("too_large", f"body exceeds the {limit}-byte cap")
            body.write(decoder.feed(chunk))
        body.write(decoder.finish())
    except _Failure:
        response.close()
        raise
    return body.getvalue()


class _Decoder:
    """Incremental gzip/deflate decoding that never produces more than ``limit`` bytes."""

    def __init__(self, content_encoding: str, limit: int) -> None:
        encoding = content_encoding.strip().lower()
        if encoding not in ("", "identity", "gzip", "x-gzip", "deflate"):
            raise _Failure("decode", f"unsupported Content-Encoding {content_encoding!r}")
        self._encoding = encoding
        self._limit = limit
        self._produced = 0
        self._pending = b""  # deflate: bytes held until the zlib header can be told apart
        self._obj: zlib._Decompress | None = None
        if encoding in ("gzip", "x-gzip"):
            self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def feed(self, data: bytes) -> bytes:
        if not self._encoding or self._encoding == "identity":
            return self._count(data)
        if self._obj is None:  # deflate, wrapper not yet known
            self._pending += data
            if len(self._pending) < 2:
                return b""
            data, self._pending = self._pending, b""
            self._obj = zlib.decompressobj(
                zlib.MAX_WBITS if _zlib_header(data) else -zlib.MAX_WBITS
            )
        return self._inflate(data)

    def finish(self) -> bytes:
        if not self._encoding or self._encoding == "identity":
            return b""
        if self._obj is None:
            if self._pending:
                raise _Failure("decode", f"{self._encoding} body too short to decode")
            return b""  # an empty body
        if not self._obj.eof:
            raise _Failure("decode", f"{self._encoding} body ends before its stream does")
        return b""

    def _inflate(self, data: bytes) -> bytes:
        assert self._obj is not None
        out = bytearray()
        while data:
            room = self._limit - self._produced + 1  # one byte more shows the cap is passed
            try:
                chunk = self._obj.decompress(data, room)
            except zlib.error as exc:
                raise _Failure("decode", f"cannot decode {self._encoding} body: {exc}") from exc
            out += self._count(chunk)
            if not self._obj.eof:
                break  # all input consumed (output stopped short of ``room``)
            data = self._obj.unused_data
            if data and self._encoding != "deflate":  # another gzip member follows
                self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS)
            else:
                break  # trailing bytes after a deflate stream are ignored
        return bytes(out)

    def _count(self, chunk: bytes) -> bytes:
        self._produced += len(chunk)
        if self._produced > self._limit:
            raise _Failure("too_large", f"decoded body exceeds the {self._limit}-byte cap")
        return chunk


def _zlib_header(data: bytes) -> bool:
    """Whether ``data`` starts with a zlib header (else it is raw deflate)."""
    cmf, flg = data[0], data[1]
    return cmf & 0x0F == 8 and (cmf << 8 | flg) % 31 == 0


# --------------------------------------------------------------------------- post


#: Redirects that keep the method and the body; a POST is never turned into a GET.
POST_REDIRECTS = frozenset({307, 308})


@dataclass(frozen=True, slots=True)
class PostResult:
    """What a POST came to. ``ok``: a 2xx status. ``error_kind`` is one of fetch's kinds."""

    url: str
    status: int | None = None
    ok: bool = False
    error: str | None = None
    error_kind: str | None = None
    reply: bytes = b""  # the start of the response body (for messages)
    retry_after: float | None = None
    elapsed: float = 0.0


async def post(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    session: aiohttp.ClientSession,
    options: FetchOptions,
    *,
    max_reply: int = 64 * 1024,
) -> PostResult:
    """POST ``body`` to ``url`` under the same rules as :func:`fetch`: http(s) only, every
    address checked before connecting (a session from :func:`make_session` checks resolved
    addresses too), one deadline for the whole exchange, 307/308 redirects followed with
    the same checks (other redirects are an error: they would turn the POST into a GET).
    Never raises for network or HTTP failures; cancellation propagates."""
    started = time.monotonic()
    progress: _Progress | None = None
    try:
        progress = _Progress(url=_parse_url(url))
        async with asyncio.timeout(options.deadline):
            return await _post_follow(body, headers, session, options, progress, max_reply, started)
    except _Failure as failure:
        kind, message = failure.kind, str(failure)
    except TimeoutError as exc:
        kind = "timeout"
        if isinstance(exc, aiohttp.ServerTimeoutError):
            message = str(exc) or f"no connection within {options.connect_timeout:g} s"
        else:
            message = f"no complete response within {options.deadline:g} s"
    except aiohttp.ClientError as exc:
        kind, message = _describe_client_error(exc)
    except OSError as exc:
        kind, message = "connection", str(exc) or type(exc).__name__
    return PostResult(
        url=str(progress.url) if progress else url,
        status=progress.status if progress else None,
        error=message,
        error_kind=kind,
        elapsed=time.monotonic() - started,
    )


async def _post_follow(
    body: bytes,
    headers: Mapping[str, str],
    session: aiohttp.ClientSession,
    options: FetchOptions,
    progress: _Progress,
    max_reply: int,
    started: float,
) -> PostResult:
    seen = {progress.url}
    sent: CIMultiDict[str] = CIMultiDict(headers)
    sent["User-Agent"] = options.user_agent
    while True:
        url = progress.url
        _check_target(url, options, "posted to")
        async with session.post(
            url,
            data=body,
            headers=sent,
            allow_redirects=False,
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, connect=options.connect_timeout),
        ) as response:
            progress.status = response.status
            if response.status not in REDIRECT_STATUSES:
                reply = await response.content.read(max_reply)
                status = response.status
                ok = 200 <= status < 300
                retry_after = None
                if status in RETRY_AFTER_STATUSES:
                    retry_after = parse_retry_after(
                        response.headers.get("Retry-After"), response.headers.get("Date")
                    )
                return PostResult(
                    url=str(url),
                    status=status,
                    ok=ok,
                    error=None if ok else f"HTTP {status} {response.reason or ''}".strip(),
                    error_kind=None if ok else _status_kind(status),
                    reply=reply,
                    retry_after=retry_after,
                    elapsed=time.monotonic() - started,
                )
            if response.status not in POST_REDIRECTS:
                raise _Failure(
                    "bad_redirect",
                    f"HTTP {response.status} redirect to "
                    f"{response.headers.get('Location', '?')}: a POST is only re-sent on "
                    "307 or 308; configure the final URL",
                )
            target = _redirect_target(response)
        _hop(progress, seen, target, options)


# --------------------------------------------------------------------------- header facts


def parse_retry_after(value: str | None, date: str | None = None) -> float | None:
    """Seconds from a Retry-After value: delta-seconds or an HTTP-date. An HTTP-date is
    measured from the response's Date header when there is one (no clock skew), else
    from now. None when absent or unreadable; never negative."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(int(text))
    when = _http_date(text)
    if when is None:
        return None
    now = _http_date(date) if date else None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _http_date(text: str) -> datetime | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


_MAX_AGE = re.compile(r'(?:^|,)\s*max-age\s*=\s*"?(\d+)"?\s*(?:,|$)', re.IGNORECASE)


def parse_max_age(cache_control: str | None) -> float | None:
    """The max-age of a Cache-Control value, in seconds, or None."""
    if not cache_control:
        return None
    found = _MAX_AGE.search(cache_control)
    return float(found.group(1)) if found else None
