"""Request bodies read under a size limit, before anything parses them.

Slack's and Zendesk's endpoints both read through here: a declared Content-Length over the
limit is refused before a byte is read, and a body that declares none (chunked) or lies about
it is cut off as soon as it passes the limit.
"""

from __future__ import annotations

from starlette.requests import Request


async def read_within(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is known to be over ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    # ASCII digits only: str.isdigit() also accepts "²", which int() refuses
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for part in request.stream():
        body.extend(part)
        if len(body) > limit:
            return None
    return bytes(body)
