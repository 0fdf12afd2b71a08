"""The review service: the operational review store (cases, claims, decisions, users, the
hash-chained audit log) and the FastAPI app people and systems use. Runs without Dagster;
``aios_pipelines.defs.review`` publishes cases into the store and copies decisions out.
"""

from aios_pipelines.review.store import (
    ConflictError,
    DecisionOutcome,
    NotFoundError,
    PermissionDeniedError,
    ReviewError,
    ReviewStore,
    ReviewValidationError,
    User,
)

__all__ = [
    "ConflictError",
    "DecisionOutcome",
    "NotFoundError",
    "PermissionDeniedError",
    "ReviewError",
    "ReviewStore",
    "ReviewValidationError",
    "User",
]
