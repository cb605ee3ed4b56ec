"""Domain errors: each carries the HTTP status and a message that says what was wrong."""

from __future__ import annotations


class MajlisError(Exception):
    status = 500
    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(MajlisError):
    status = 400
    code = "bad_request"


class Unauthorized(MajlisError):
    status = 401
    code = "unauthorized"


class Forbidden(MajlisError):
    status = 403
    code = "forbidden"


class NotFound(MajlisError):
    status = 404
    code = "not_found"


class Conflict(MajlisError):
    status = 409
    code = "conflict"


class PayloadTooLarge(MajlisError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(MajlisError):
    status = 415
    code = "unsupported_media_type"


class Unavailable(MajlisError):
    status = 503
    code = "unavailable"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after
