"""The ceiling `bench/flags_http.py --bare` compares /flags with: a bare ASGI app on the same
uvicorn set-up that reads the whole request body and answers a fixed body (the bytes of a real
`/flags` answer, from the file named by `BARE_ASGI_BODY`), so what remains is the server stack."""

import os
from pathlib import Path

_BODY = Path(os.environ["BARE_ASGI_BODY"]).read_bytes()
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_BODY)).encode())]


async def app(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _BODY})
