/**
 * The one place requests go out: base URL, bearer key, timeouts, and the retry loop.
 *
 * Which failures a call may retry is the caller's decision (a FitInView submit carries an
 * Idempotency-Key and may retry anything; an FtmvAI order has no such key and must not be
 * resent after a cut connection). The loop itself only knows how long to wait: the
 * `Retry-After` of a 429 or 503 when there is one, else exponential backoff with jitter.
 */

import {
  APIConnectionError,
  type Dialect,
  type RateLimit,
  TryonError,
  errorFromResponse,
  rateLimitFrom,
  retryAfterFrom,
} from "./errors.js";

export const DEFAULT_BASE_URL = "http://127.0.0.1:8000";

export interface ClientOptions {
  /** The API key; defaults to `TRYON_API_KEY` from the environment (Node). */
  apiKey?: string;
  /** The gateway's base URL; defaults to `TRYON_BASE_URL`, then `http://127.0.0.1:8000`. */
  baseUrl?: string;
  /** A `fetch` to use instead of the platform's. */
  fetch?: typeof globalThis.fetch;
  /** Per-request timeout in ms (a FitInView sync wait takes up to 90 s). Default 120 000. */
  timeoutMs?: number;
  /** Retries after the first attempt (transport errors, 409, 429, 5xx). Default 4. */
  maxRetries?: number;
  /** First backoff delay in ms; doubles per attempt, with jitter. Default 500. */
  retryBaseDelayMs?: number;
  /** Longest backoff delay in ms. Default 8 000. */
  retryMaxDelayMs?: number;
  /** A 429 asking to wait longer than this is thrown at once instead of waited out. Default 60. */
  maxRetryAfterSeconds?: number;
  /** Called before each retry: for logging, or to see what the client is doing. */
  onRetry?: (info: RetryInfo) => void;
  /** Extra headers for every request. */
  headers?: Record<string, string>;
}

export interface RetryInfo {
  method: string;
  path: string;
  /** 1 for the first retry. */
  attempt: number;
  delayMs: number;
  /** The status that caused it, or 0 for a transport error. */
  status: number;
  error: TryonError;
  idempotencyKey: string | null;
}

export interface RetryRule {
  /** Resend after a transport error (only safe when the request is idempotent). */
  transport: boolean;
  /** Resend after a refused connection (the gateway never saw the request). */
  connectRefused?: boolean;
  /** Statuses to resend after. */
  statuses: (status: number) => boolean;
}

export const SAFE_RETRY: RetryRule = {
  transport: true,
  statuses: (status) => status === 409 || status === 429 || status >= 500,
};

export interface RequestOptions {
  body?: unknown;
  query?: Record<string, string | number | undefined>;
  headers?: Record<string, string>;
  retry?: RetryRule;
  signal?: AbortSignal;
  /** Skip the bearer key (downloads of presigned URLs). */
  anonymous?: boolean;
  /** Parse the answer as bytes instead of JSON. */
  binary?: boolean;
}

export interface HttpResult<T> {
  status: number;
  body: T;
  headers: Headers;
}

function env(name: string): string | undefined {
  const proc = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  return proc?.env?.[name];
}

export function resolveOptions(options: ClientOptions): { apiKey: string; baseUrl: string } {
  const apiKey = options.apiKey ?? env("TRYON_API_KEY");
  if (!apiKey) throw new TypeError("an API key is required (apiKey option or TRYON_API_KEY)");
  const baseUrl = (options.baseUrl ?? env("TRYON_BASE_URL") ?? DEFAULT_BASE_URL).replace(/\/+$/, "");
  return { apiKey, baseUrl };
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

export class HttpClient {
  readonly apiKey: string;
  readonly baseUrl: string;
  /** The `X-RateLimit-*` headers of the latest answer that had them. */
  rateLimit: RateLimit | null = null;
  private readonly fetchImpl: typeof globalThis.fetch;
  private readonly options: ClientOptions;

  constructor(
    readonly dialect: Dialect,
    options: ClientOptions,
  ) {
    const resolved = resolveOptions(options);
    this.apiKey = resolved.apiKey;
    this.baseUrl = resolved.baseUrl;
    this.options = options;
    const fetchImpl = options.fetch ?? globalThis.fetch;
    if (typeof fetchImpl !== "function") throw new TypeError("no fetch: pass one in the fetch option");
    this.fetchImpl = fetchImpl.bind(globalThis);
  }

  url(path: string, query?: RequestOptions["query"]): string {
    const url = new URL(/^https?:\/\//.test(path) ? path : this.baseUrl + path);
    for (const [name, value] of Object.entries(query ?? {})) {
      if (value !== undefined) url.searchParams.set(name, String(value));
    }
    return url.toString();
  }

  /** Send one request, retrying what `options.retry` allows; throw a `TryonError` on failure. */
  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<HttpResult<T>> {
    const maxRetries = this.options.maxRetries ?? 4;
    const rule = options.retry ?? SAFE_RETRY;
    const idempotencyKey = options.headers?.["Idempotency-Key"] ?? null;
    for (let attempt = 0; ; attempt++) {
      let error: TryonError;
      try {
        return await this.once<T>(method, path, options);
      } catch (caught) {
        if (!(caught instanceof TryonError)) throw caught;
        error = caught;
      }
      const retryable =
        error instanceof APIConnectionError
          ? rule.transport || (rule.connectRefused === true && error.code === "connection_refused")
          : rule.statuses(error.status);
      if (!retryable || attempt >= maxRetries || options.signal?.aborted) throw error;
      const delayMs = this.delayFor(error, attempt);
      if (delayMs === null) throw error;
      this.options.onRetry?.({
        method,
        path,
        attempt: attempt + 1,
        delayMs,
        status: error.status,
        error,
        idempotencyKey,
      });
      await sleep(delayMs, options.signal);
    }
  }

  /** How long to wait before retrying after `error`; null: don't (asked to wait too long). */
  private delayFor(error: TryonError, attempt: number): number | null {
    const retryAfter = error.headers ? retryAfterFrom(error.headers) : null;
    if (retryAfter !== null && (error.status === 429 || error.status === 503)) {
      if (retryAfter > (this.options.maxRetryAfterSeconds ?? 60)) return null;
      return retryAfter * 1000;
    }
    const base = this.options.retryBaseDelayMs ?? 500;
    const cap = this.options.retryMaxDelayMs ?? 8000;
    const exponential = Math.min(cap, base * 2 ** attempt);
    return Math.round(exponential / 2 + Math.random() * (exponential / 2));
  }

  private async once<T>(method: string, path: string, options: RequestOptions): Promise<HttpResult<T>> {
    const headers: Record<string, string> = { Accept: "application/json", ...this.options.headers, ...options.headers };
    if (!options.anonymous) headers.Authorization = `Bearer ${this.apiKey}`;
    let body: string | undefined;
    if (options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(options.body);
    }
    const timeout = AbortSignal.timeout(this.options.timeoutMs ?? 120_000);
    const signal = options.signal ? anySignal([options.signal, timeout]) : timeout;
    let response: Response;
    try {
      response = await this.fetchImpl(this.url(path, options.query), { method, headers, body, signal });
    } catch (cause) {
      if (options.signal?.aborted) throw options.signal.reason ?? cause;
      const timedOut = timeout.aborted;
      throw new APIConnectionError({
        status: 0,
        code: timedOut ? "timeout" : refused(cause) ? "connection_refused" : "connection_error",
        message: timedOut
          ? `${method} ${path}: no answer within ${this.options.timeoutMs ?? 120_000} ms`
          : `${method} ${path}: ${describe(cause)}`,
        dialect: this.dialect,
        cause,
      });
    }
    const rateLimit = options.anonymous ? null : rateLimitFrom(response.headers);
    if (rateLimit) this.rateLimit = rateLimit;
    let parsed: unknown;
    try {
      parsed = await readBody(response, options.binary === true && response.ok);
    } catch (cause) {
      throw new APIConnectionError({
        status: 0,
        code: "connection_error",
        message: `${method} ${path}: the answer was cut off (${describe(cause)})`,
        dialect: this.dialect,
        cause,
      });
    }
    if (!response.ok) throw errorFromResponse(this.dialect, response.status, parsed, response.headers);
    return { status: response.status, body: parsed as T, headers: response.headers };
  }
}

async function readBody(response: Response, binary: boolean): Promise<unknown> {
  if (binary) return new Uint8Array(await response.arrayBuffer());
  const text = await response.text();
  if (text === "") return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/** Node's fetch (undici) reports a refused connection as `cause.code === "ECONNREFUSED"`. */
function refused(cause: unknown): boolean {
  const inner = (cause as { cause?: { code?: unknown; errors?: { code?: unknown }[] } } | null)?.cause;
  return inner?.code === "ECONNREFUSED" || (inner?.errors ?? []).some((error) => error.code === "ECONNREFUSED");
}

function describe(cause: unknown): string {
  if (cause instanceof Error) {
    const inner = (cause as { cause?: unknown }).cause;
    const detail = inner instanceof Error ? `: ${(inner as { code?: string }).code ?? inner.message}` : "";
    return `${cause.message}${detail}`;
  }
  return String(cause);
}

/** `AbortSignal.any` where available (Node ≥ 20, modern browsers), else a small stand-in. */
function anySignal(signals: AbortSignal[]): AbortSignal {
  const native = (AbortSignal as unknown as { any?: (s: AbortSignal[]) => AbortSignal }).any;
  if (native) return native(signals);
  const controller = new AbortController();
  for (const signal of signals) {
    if (signal.aborted) {
      controller.abort(signal.reason);
      break;
    }
    signal.addEventListener("abort", () => controller.abort(signal.reason), { once: true });
  }
  return controller.signal;
}
