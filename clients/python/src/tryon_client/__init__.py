"""tryon-client: the Python SDK for tryon-gateway's FitInView and FtmvAI API dialects.

from tryon_client import Client

client = Client("fiv_test_…", base_url="http://127.0.0.1:8000")
job = client.tryon(person="me.jpg", garments=["shirt.png"], output_size="2K")
job.save("out.png")
"""

from __future__ import annotations

__version__ = "0.1.0"

from tryon_client import webhooks
from tryon_client._core import RetryEvent, dialect_of
from tryon_client.client import AsyncClient, AsyncFitInView, AsyncFtmvAI, Client, FitInView, FtmvAI
from tryon_client.errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    DialectError,
    InvalidInputError,
    JobFailedError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TryonError,
    WaitTimeoutError,
    WebhookVerificationError,
)
from tryon_client.models import (
    Account,
    FtmvAccount,
    Job,
    Order,
    ProgressEvent,
    Purchase,
    RateLimit,
)

__all__ = [
    "APIConnectionError",
    "APIError",
    "Account",
    "AsyncClient",
    "AsyncFitInView",
    "AsyncFtmvAI",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "ConflictError",
    "DialectError",
    "FitInView",
    "FtmvAI",
    "FtmvAccount",
    "InvalidInputError",
    "Job",
    "JobFailedError",
    "NotFoundError",
    "Order",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "ProgressEvent",
    "Purchase",
    "RateLimit",
    "RateLimitError",
    "RetryEvent",
    "ServerError",
    "TryonError",
    "WaitTimeoutError",
    "WebhookVerificationError",
    "__version__",
    "dialect_of",
    "webhooks",
]
