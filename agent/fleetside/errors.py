"""The fleet service's error responses: one shape for every route.

An error is JSON `{"error": code, "message": text}` with a 4xx or 5xx status. A route raises
`ApiError`; the guard that wraps every authenticated route turns it into the response.
"""
from __future__ import annotations

from starlette.responses import JSONResponse


class ApiError(Exception):
    """A request the service refuses: HTTP status, a stable machine code, a human message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)
