"""The HTTP edge shared by every protocol's endpoints: access, body limits, formats, responses.

Each request's wire format is negotiated once (`negotiate`) from its headers: the
body's format (Content-Type, or the first byte when there is none), its declared
length, and the response's format (Accept). Domain errors become HTTP responses in
one place (`guard`).
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from shipmate.common.vocabulary import WireFormat
from shipmate.serving.errors import (
    ManagementDisabled,
    PayloadTooLarge,
    ServingError,
    Unauthorized,
    UnsupportedMediaType,
)
from shipmate.serving.protocol import InputError

JSON = WireFormat.JSON.media_type
CSV = WireFormat.CSV.media_type
Handler = Callable[[Request], Awaitable[Response]]


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON)


def error_response(status: int, message: str, **extra: Any) -> Response:
    return json_response({"message": message, **{k: v for k, v in extra.items() if v is not None}}, status)


def guard(handler: Handler) -> Handler:
    """The one place domain errors become HTTP responses."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except InputError as exc:
            return error_response(exc.status, str(exc), row=exc.row, column=exc.column)
        except ServingError as exc:
            return error_response(exc.status, str(exc))

    endpoint.__name__ = handler.__name__
    return endpoint


class Access:
    """Who may call what: predictions are open unless configured otherwise; management needs the key."""

    def __init__(self, key: bytes | None, *, for_predictions: bool) -> None:
        self._key = key
        self._for_predictions = for_predictions

    def check(self, request: Request, *, management: bool) -> None:
        if self._key is None:
            if management:
                raise ManagementDisabled(
                    "management endpoints are disabled: configure an API key to enable them"
                )
            return
        if not management and not self._for_predictions:
            return
        supplied = request.headers.get("x-api-key") or ""
        auth = request.headers.get("authorization", "")
        if not supplied and auth[:7].lower() == "bearer ":
            supplied = auth[7:].strip()
        if not supplied or not hmac.compare_digest(supplied.encode(), self._key):
            raise Unauthorized("a valid API key is required (Authorization: Bearer <key> or X-API-Key)")


# ---------------------------------------------------------------- bodies


def declared_length(request: Request, limit: int) -> int | None:
    """The body's length from Content-Length (refused at once when over ``limit``)."""
    declared = request.headers.get("content-length")
    if declared is None or not declared.isdigit():
        return None
    if int(declared) > limit:
        raise PayloadTooLarge(f"the request body is {declared} bytes; the limit is {limit}")
    return int(declared)


async def body_pieces(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The body as it arrives, refused once it grows past ``limit`` bytes (Content-Length checked
    by the caller, see `negotiate`)."""
    size = 0
    async for piece in request.stream():
        size += len(piece)
        if size > limit:
            raise PayloadTooLarge(f"the request body exceeds the limit of {limit} bytes")
        if piece:
            yield piece


async def read_body(request: Request, limit: int) -> bytes:
    declared_length(request, limit)
    return b"".join([piece async for piece in body_pieces(request, limit)])


# ---------------------------------------------------------------- formats


@dataclass(slots=True)
class Wire:
    """A prediction request's formats and size, as its headers state them."""

    declared: WireFormat | None  # from the Content-Type; None when there is none
    length: int | None  # Content-Length, when given
    out: WireFormat  # CSV when the client accepts CSV, else JSON (DataRobot's response shape)

    @property
    def media_type(self) -> str:
        return self.out.media_type

    def body_format(self, body: bytes) -> WireFormat:
        """As declared, or when nothing was, from the first byte."""
        if self.declared is not None:
            return self.declared
        return WireFormat.JSON if body.lstrip()[:1] in (b"[", b"{") else WireFormat.CSV  # JSON: a bracket


def negotiate(request: Request, limit: int) -> Wire:
    """The request's `Wire`, decided once; refuses a declared body over ``limit`` or an unknown type."""
    length = declared_length(request, limit)
    raw = request.headers.get("content-type", "")
    ctype = raw.split(";", 1)[0].strip().lower()
    kind, _, subtype = ctype.partition("/")
    if raw.strip() and not (kind and subtype):
        raise UnsupportedMediaType(f"unparseable Content-Type {raw!r}: send application/json or text/csv")
    declared = WireFormat.from_media_type(ctype) if ctype else None
    if ctype and declared is None:
        raise UnsupportedMediaType(f"unsupported Content-Type {ctype!r}: send application/json or text/csv")
    out = WireFormat.CSV if CSV in request.headers.get("accept", "") else WireFormat.JSON
    return Wire(declared, length, out)
