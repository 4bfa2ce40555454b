"""Domain errors raised by annotation.services; the API maps each to an HTTP status."""


class AnnotationError(Exception):
    """Base class; `status_code` is the HTTP status the API answers with."""

    status_code = 400
    code = "invalid"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class LeaseConflict(AnnotationError):
    """The item is not (or no longer) leased to this annotator, or it needs no more labels."""

    status_code = 409
    code = "lease_conflict"


class InvalidLabel(AnnotationError):
    status_code = 400
    code = "invalid_label"


class InvalidReview(AnnotationError):
    status_code = 400
    code = "invalid_review"


class IdempotencyKeyReused(AnnotationError):
    """The idempotency key was already used for a different item."""

    status_code = 409
    code = "idempotency_key_reused"


class Forbidden(AnnotationError):
    """core.policy refused: no longer a member, or the project is archived."""

    status_code = 403
    code = "permission_denied"


class NotFound(AnnotationError):
    status_code = 404
    code = "not_found"


class ReviewConflict(LeaseConflict):
    """The item is not in a state that can be reviewed (not finished, gold)."""

    code = "review_conflict"
