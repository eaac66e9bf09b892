"""API errors in OpenAI's shape: {"error": {"message", "type", "param", "code"}} with the right status.

400 bad input, 401 missing or wrong key, 404 unknown resource, 413 too large, 503 models not ready,
500 the engine's unexpected failures. Handlers turn every exception into this shape, so a client
never sees a traceback and the server never goes down for bad input.
"""
from __future__ import annotations

from starlette.responses import JSONResponse

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
          413: "invalid_request_error", 503: "server_unavailable", 500: "server_error"}


class ApiError(Exception):
    """An error answer: HTTP status, a message a user can act on, the request field it is about."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": _TYPES.get(self.status, "invalid_request_error"),
                          "param": self.param, "code": self.code}}
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse(body, status_code=self.status, headers=headers)
