"""Who may see the web view, and the headers every response carries.

Safe by default: the view binds 127.0.0.1; any other address needs credentials, else it
refuses to start. Credentials are a token read from a file (sent as ``Authorization:
Bearer TOKEN``, or as the password of HTTP basic auth with any user name, which browsers
and feed readers can do), and/or the name of a header that an authenticating reverse
proxy sets (``trust_proxy_auth``). ``/healthz`` answers everyone.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from collections.abc import Awaitable, Callable

from aiohttp import web

from monitor.errors import ConfigError

#: No script at all; styles only from our own stylesheet; nothing framed, nothing sent away.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
OPEN_PATHS = frozenset({"/healthz"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(listen: str, token: str | None, proxy_header: str | None) -> None:
    """Refuse a non-loopback bind that nobody has to log in to."""
    host, _port = split_listen(listen)
    if not is_loopback(host) and not token and not proxy_header:
        raise ConfigError(
            f"web: refusing to serve on {listen} without credentials",
            hint="set [web] token_file (or trust_proxy_auth behind an authenticating "
            "proxy), or listen on 127.0.0.1",
        )


def authorised(request: web.Request, token: str | None, proxy_header: str | None) -> bool:
    if token is None and proxy_header is None:
        return True
    if proxy_header and request.headers.get(proxy_header, "").strip():
        return True
    if token is None:
        return False
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return hmac.compare_digest(value.encode(), token.encode())
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        _user, sep, password = decoded.partition(":")
        return bool(sep) and hmac.compare_digest(password.encode(), token.encode())
    return False


def middleware(
    token: str | None, proxy_header: str | None
) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in OPEN_PATHS and not authorised(request, token, proxy_header):
            response: web.StreamResponse = web.Response(
                status=401,
                text="401: log in to see this page\n",
                headers={"WWW-Authenticate": 'Basic realm="monitor", charset="UTF-8"'},
            )
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                if exc.status < 400:
                    raise
                response = web.Response(
                    status=exc.status, text=exc.text or exc.reason, content_type="text/plain"
                )
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        response.headers.setdefault("Cache-Control", "private, no-cache")
        return response

    return guard
