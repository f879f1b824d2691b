/**
 * One error tree for both dialects, so a caller catches `TryonError` (or one subclass)
 * whichever API a key speaks. Every error carries the HTTP status (0 when no answer came),
 * the dialect's error code, the message and the request id when the gateway sent one.
 *
 * FtmvAI errors carry their UPPER_SNAKE code (`INSUFFICIENT_CREDITS`); FitInView answers only
 * `{"detail": "…"}`, so its HTTP errors have `code: null` (the class says what happened). A
 * failed job's code is its `error_code`; errors raised inside the SDK use their own lowercase
 * codes (`connection_error`, `timeout`, `wait_timeout`, `invalid_signature`, …). The names
 * match the Python SDK's (`tryon_client.errors`).
 */

export type Dialect = "fitinview" | "ftmvai";

/** The `X-RateLimit-*` headers of an answer (FtmvAI sends them on every authenticated answer). */
export interface RateLimit {
  limit: number;
  remaining: number;
  /** Unix seconds when the window resets. */
  reset: number;
}

export interface TryonErrorInit {
  status: number;
  code: string | null;
  message: string;
  requestId?: string | null;
  dialect?: Dialect | null;
  body?: unknown;
  headers?: Headers | null;
  cause?: unknown;
}

export class TryonError extends Error {
  /** HTTP status of the answer; 0 when none came (transport error, timeout, bad signature). */
  readonly status: number;
  /** The dialect's error code (`RATE_LIMITED`, `generation_failed`, …); null when it sent none. */
  readonly code: string | null;
  /** The gateway's request id (`X-Request-Id`) when it sent one. */
  readonly requestId: string | null;
  readonly dialect: Dialect | null;
  /** The parsed error body as the gateway sent it. */
  readonly body: unknown;
  readonly headers: Headers | null;

  constructor(init: TryonErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = new.target.name;
    this.status = init.status;
    this.code = init.code;
    this.requestId = init.requestId ?? null;
    this.dialect = init.dialect ?? null;
    this.body = init.body;
    this.headers = init.headers ?? null;
  }
}

/** 400 or 422: the request is wrong (field, image, Idempotency-Key reused with another body). */
export class BadRequestError extends TryonError {}
/** 401: missing or unknown key, or a key used on the other dialect's routes. */
export class AuthenticationError extends TryonError {}
/** 402: the balance does not cover the price. Nothing was charged. */
export class PaymentRequiredError extends TryonError {}
/** 403: the key is disabled. */
export class PermissionDeniedError extends TryonError {}
/** 404: no such job or order for this key. */
export class NotFoundError extends TryonError {}
/** 409: the same Idempotency-Key is still being accepted (retried automatically). */
export class ConflictError extends TryonError {}

/** 429: over a limit. `retryAfter` is the `Retry-After` header in seconds. */
export class RateLimitError extends TryonError {
  readonly retryAfter: number | null;
  readonly rateLimit: RateLimit | null;

  constructor(init: TryonErrorInit & { retryAfter: number | null; rateLimit: RateLimit | null }) {
    super(init);
    this.retryAfter = init.retryAfter;
    this.rateLimit = init.rateLimit;
  }
}

/** 5xx: the gateway failed before charging (500 is refunded, 503 never charged). */
export class ServerError extends TryonError {}

/** No answer: the connection failed or was cut, or the request timed out. */
export class APIConnectionError extends TryonError {}

/** A job or order ended `failed`; `code`/`message` are its `error_code`/`error_message`. */
export class JobFailedError extends TryonError {
  readonly job: unknown;

  constructor(init: TryonErrorInit & { job: unknown }) {
    super(init);
    this.job = init.job;
  }
}

/** `waitFor` / `waitForOrder` gave up before the job ended; the job keeps running. */
export class WaitTimeoutError extends TryonError {
  readonly job: unknown;

  constructor(init: TryonErrorInit & { job: unknown }) {
    super(init);
    this.job = init.job;
  }
}

/** A webhook's signature or timestamp did not check out. */
export class WebhookVerificationError extends TryonError {}

function classFor(status: number): typeof TryonError {
  if (status === 400 || status === 413 || status === 422) return BadRequestError;
  if (status === 401) return AuthenticationError;
  if (status === 402) return PaymentRequiredError;
  if (status === 403) return PermissionDeniedError;
  if (status === 404) return NotFoundError;
  if (status === 409) return ConflictError;
  if (status >= 500) return ServerError;
  return TryonError;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** `X-RateLimit-*` as numbers, or null when the answer has none. */
export function rateLimitFrom(headers: Headers): RateLimit | null {
  const limit = headers.get("x-ratelimit-limit");
  const remaining = headers.get("x-ratelimit-remaining");
  const reset = headers.get("x-ratelimit-reset");
  if (limit === null || remaining === null || reset === null) return null;
  return { limit: Number(limit), remaining: Number(remaining), reset: Number(reset) };
}

/** `Retry-After` in seconds (delta-seconds or an HTTP date), or null. */
export function retryAfterFrom(headers: Headers, now: number = Date.now()): number | null {
  const raw = headers.get("retry-after");
  if (raw === null || raw.trim() === "") return null;
  const seconds = Number(raw);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const date = Date.parse(raw);
  return Number.isNaN(date) ? null : Math.max(0, Math.ceil((date - now) / 1000));
}

export function requestIdFrom(headers: Headers): string | null {
  return headers.get("x-request-id") ?? headers.get("request-id");
}

/** The error a non-2xx answer stands for, in the dialect's words. */
export function errorFromResponse(dialect: Dialect, status: number, body: unknown, headers: Headers): TryonError {
  let code: string | null = null;
  let message = `HTTP ${status}`;
  if (isRecord(body)) {
    if (typeof body.detail === "string") message = body.detail;
    const error = body.error;
    if (isRecord(error)) {
      if (typeof error.code === "string") code = error.code;
      if (typeof error.message === "string") message = error.message;
    }
  } else if (typeof body === "string" && body.trim() !== "") {
    message = body.slice(0, 500);
  }
  const init: TryonErrorInit = { status, code, message, requestId: requestIdFrom(headers), dialect, body, headers };
  if (status === 429) {
    return new RateLimitError({ ...init, retryAfter: retryAfterFrom(headers), rateLimit: rateLimitFrom(headers) });
  }
  const ErrorClass = classFor(status);
  return new ErrorClass(init);
}
