"""Online decisioning: one application at a time, while the applicant waits, with the same
contract validation, features, scoring and policy as the nightly batch. Nothing here imports
Dagster; the review service exposes it as ``POST /api/decisions``."""
