"""Who may ask, from where: the Host/Origin check and the API key, before any route or the predict fast path.

- **Host and Origin** must name an allowed host (ALLOWED_HOSTS): a page on another site that rebinds its DNS
  name to 127.0.0.1 sends its own name in Host (and Origin), so a loopback API never answers it (403).
- **API key** (``Authorization: Bearer ulk_...``) on everything but /healthz and /readyz, the page at / and
  the files under /static/ (public files that hold no data: the page calls the API with the key, see
  service/page.py), and the docs with PUBLIC_DOCS: 401 without a valid one. The caller goes into the ASGI
  scope (``unilabel.caller``) for the routes. A verified key is trusted for API_KEY_CACHE_S seconds per
  process (a revoked key stops working within that time) so that the predict fast path does not pay a
  Redis round trip per request. While Redis cannot be reached, a key verified in the last
  API_KEY_OUTAGE_GRACE_S is trusted still: prediction needs nothing else of Redis, so it goes on through a
  Redis restart (a revocation needs Redis too).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import ApiError, error_response, unavailable_redis
from service.keys import Caller, holder, key_name, parse_token, verify
from worker.settings import Settings

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/"})
STATIC_PREFIX = "/static/"  # the page's and the docs' assets (service/page.py, service/docs.py)
DOC_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
CALLER = "unilabel.caller"
CACHE_SIZE = 4096  # verified keys kept per process
# The health checks answer these as Host whatever ALLOWED_HOSTS says: the images' healthchecks ask
# http://127.0.0.1:8000/healthz. Only they: behind a proxy that sends Host 127.0.0.1 the rest stays guarded.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1"})
HEALTH_PATHS = frozenset({"/healthz", "/readyz"})


def _host_of(value: str) -> str:
    """The host name of a Host header value (``name``, ``name:port``, ``[v6]:port``), lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _headers(scope: Scope) -> tuple[bytes, bytes | None, bytes | None]:
    """Host, Origin and Authorization, in one pass over the request's headers."""
    host, origin, authorization = b"", None, None
    for name, value in scope.get("headers") or ():
        if name == b"host":
            host = value
        elif name == b"authorization":
            authorization = value
        elif name == b"origin":
            origin = value
    return host, origin, authorization


def host_problem(
    host: bytes, origin: bytes | None, allowed: frozenset[str], path: str = ""
) -> ApiError | None:
    """403 when Host or Origin names a host that is not allowed (the health checks take the loopback
    addresses as Host too)."""
    if "*" in allowed:
        return None
    name = _host_of(host.decode("latin-1"))
    if name not in allowed and not (name in LOOPBACK_HOSTS and path in HEALTH_PATHS):
        return ApiError(403, f"host {name!r} is not served here (ALLOWED_HOSTS)", field="header.host")
    if origin is not None:
        name = (urlsplit(origin.decode("latin-1")).hostname or "").lower()
        if name not in allowed:
            return ApiError(
                403, f"origin {name or 'null'!r} is not allowed (ALLOWED_HOSTS)", field="header.origin"
            )
    return None


def unauthorized(message: str) -> ApiError:
    return ApiError(
        401,
        message,
        field="header.authorization",
        code="unauthorized",
        headers={"WWW-Authenticate": "Bearer"},
    )


class KeyVerifier:
    """Bearer token -> Caller, through Redis, with a small per-process cache of verified keys."""

    def __init__(self, redis_url: str, cache_s: float, outage_grace_s: float = 0.0) -> None:
        self.r = aioredis.Redis.from_url(redis_url, decode_responses=True)
        self.cache_s = cache_s
        self.outage_grace_s = outage_grace_s
        self._cache: OrderedDict[bytes, tuple[Caller, float]] = OrderedDict()  # by the header's bytes

    async def caller(self, authorization: bytes | None) -> Caller:
        """The caller of an Authorization header value; raises ApiError(401)."""
        if not authorization:
            raise unauthorized("an API key is required: Authorization: Bearer <key>")
        now = time.monotonic()
        hit = self._cache.get(authorization)
        if hit is not None and hit[1] > now:
            return hit[0]
        scheme, _, token = authorization.decode("latin-1").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise unauthorized("send the API key as Authorization: Bearer <key>")
        parsed = parse_token(token)
        try:
            caller = verify(await self.r.hgetall(key_name(parsed[0])), parsed[1]) if parsed else None
        except RedisError:
            if hit is not None and now < hit[1] + self.outage_grace_s:
                return hit[0]
            raise
        if caller is None:
            self._cache.pop(authorization, None)
            raise unauthorized("the API key is not valid (unknown, malformed or revoked)")
        if self.cache_s > 0 or self.outage_grace_s > 0:  # with API_KEY_CACHE_S=0, kept for an outage only
            self._cache[authorization] = (caller, now + self.cache_s)
            self._cache.move_to_end(authorization)
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return caller

    async def holder(self, key_id: str) -> Caller | None:
        """The key with this id (``KEY_ID``), revoked or not, or None."""
        return holder(await self.r.hgetall(key_name(key_id)))

    async def close(self) -> None:
        await self.r.aclose()


class Gate:
    """Pure ASGI in front of everything (FastAPI and the predict fast path alike)."""

    def __init__(self, app: ASGIApp, settings: Settings, verifier: KeyVerifier, routes: list) -> None:
        self.app = app
        self.allowed = settings.host_names()
        self.open = OPEN_PATHS | (DOC_PATHS if settings.public_docs else frozenset())
        self.verifier = verifier
        self.routes = routes  # to label a refused request with its route in /metrics
        self._hosts_ok: set[bytes] = set()  # Host values found allowed already: not parsed again

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host, origin, authorization = _headers(scope)
        problem = None
        if origin is not None or host not in self._hosts_ok:
            problem = host_problem(host, origin, self.allowed, scope["path"])
            if (
                problem is None
                and origin is None
                and scope["path"] not in HEALTH_PATHS
                and len(self._hosts_ok) < 64
            ):
                self._hosts_ok.add(host)
        if problem is None:
            try:
                path = scope["path"]
                if path in self.open or path.startswith(STATIC_PREFIX):
                    # a valid key still counts (an admin's /readyz names workers)
                    scope[CALLER] = await self._optional(authorization)
                else:
                    scope[CALLER] = await self.verifier.caller(authorization)
            except ApiError as exc:
                problem = exc
            except RedisError:  # keys cannot be checked while Redis is away: retry shortly, as elsewhere
                problem = unavailable_redis()
        if problem is not None:
            self._label(scope)
            await error_response(problem)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _optional(self, authorization: bytes | None) -> Caller | None:
        if not authorization:
            return None
        try:
            return await self.verifier.caller(authorization)
        except (ApiError, RedisError):
            return None

    def _label(self, scope: Scope) -> None:
        for route in self.routes:
            if route.matches(scope)[0] == Match.FULL:
                scope["unilabel.route"] = getattr(route, "path", None)
                return
