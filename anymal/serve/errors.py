"""The error a request gets, in OpenAI's format (status, message, the parameter at fault, a code)."""
from __future__ import annotations


class ServeError(Exception):
    """An error for the client, in OpenAI's format."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type

    def __reduce__(self):  # crosses the pipe from the engine process whole (Exception's would drop the status)
        return ServeError, (self.status, self.message, self.param, self.code, self.type)

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
