/**
 * The FtmvAI dialect (64-hex keys): `POST /api/v1/generate`, `GET /api/v1/orders/{id}` and
 * `GET /api/v1/account`.
 *
 * FtmvAI has no Idempotency-Key, so an order is never resent after a cut connection (that
 * could create a second order); it is resent after a 429 (waiting `Retry-After`, e.g. while
 * the plan's orders in progress are full) and a 503, which never create one. Every answer's
 * `X-RateLimit-*` headers are kept in `client.rateLimit`.
 */

import { JobFailedError, type RateLimit, TryonError, WaitTimeoutError } from "./errors.js";
import { type ClientOptions, HttpClient, type RetryRule, sleep } from "./http.js";
import { type ImageInput, encodeImage, isUrl, nodeFs } from "./images.js";

export type OrderStatus = "pending" | "in_progress" | "completed" | "failed";
export type Quality = "standard" | "high";
export type Format = "jpg" | "png";

export interface GenerateResponse {
  success: true;
  order_id: number;
  status: "pending";
  credits_used: number;
  message: string;
  estimated_time: string;
  created_at: string;
}

export interface OrderResults {
  person_url?: string | null;
  clothing_url?: string | null;
  result_url?: string | null;
  product_url?: string | null;
  catalog_images?: string[];
  quantity?: number;
  product_description?: string;
}

export interface Order {
  id: number;
  status: OrderStatus;
  credits_used: number;
  progress?: number;
  results?: OrderResults;
  error?: { code: string; message: string };
  created_at: string;
  estimated_completion?: string;
  completed_at?: string;
  processing_time?: number;
  credits_refunded?: number;
}

export interface FtmvAIAccount {
  success: true;
  account: {
    user_id: number;
    credits_remaining: number;
    api_calls_today: number;
    api_calls_total: number;
    plan: string;
  };
  rate_limit: RateLimit;
}

export interface OrderOptions {
  quality?: Quality;
  format?: Format;
  /**
   * true (default): poll until the order ends and resolve with it; a failed order throws
   * `JobFailedError`. false: resolve at once with the pending order.
   */
  wait?: boolean;
  /** Options for that polling. */
  waitOptions?: OrderWaitOptions;
  signal?: AbortSignal;
}

export interface OrderWaitOptions {
  /** Give up after this many ms (the order keeps running). Default 600 000. */
  timeoutMs?: number;
  /** First poll interval in ms; grows ×1.5 per poll. Default 1 000. */
  intervalMs?: number;
  /** Longest poll interval in ms. Default 5 000 (the document's example polls every 5 s). */
  maxIntervalMs?: number;
  signal?: AbortSignal;
  /** Called after every poll: `order.progress` is 0–100 from the job's real stages. */
  onProgress?: (order: Order) => void;
  /** Throw `JobFailedError` when the order ends `failed` instead of returning it. Default false. */
  throwOnFailure?: boolean;
}

/**
 * FtmvAI orders carry no idempotency key: resent only when the gateway cannot have seen them
 * (connection refused) or refused them before any work (429, 503).
 */
const ORDER_RETRY: RetryRule = {
  transport: false,
  connectRefused: true,
  statuses: (status) => status === 429 || status === 503,
};

export function orderFailed(order: Order): JobFailedError {
  return new JobFailedError({
    status: 200,
    code: order.error?.code ?? "GENERATION_FAILED",
    message: order.error?.message ?? `order ${order.id} failed`,
    dialect: "ftmvai",
    job: order,
  });
}

export class FtmvAIClient {
  readonly dialect = "ftmvai" as const;
  readonly http: HttpClient;

  constructor(options: ClientOptions = {}) {
    this.http = new HttpClient("ftmvai", options);
  }

  /** The `X-RateLimit-*` headers of the latest answer. */
  get rateLimit(): RateLimit | null {
    return this.http.rateLimit;
  }

  /** A virtual try-on order (1 credit); with `wait` (default) resolves with the completed order. */
  async generate(params: { person: ImageInput; clothing: ImageInput } & OrderOptions): Promise<Order> {
    return this.submit(
      {
        style: "virtual_tryon",
        person_image: await this.base64(params.person, params.signal),
        clothing_image: await this.base64(params.clothing, params.signal),
      },
      params,
    );
  }

  /** A product catalog order: 6 (24 credits) or 12 (36 credits) shop shots of one product. */
  async catalog(params: { product: ImageInput; count?: 6 | 12 } & OrderOptions): Promise<Order> {
    const count = params.count ?? 6;
    if (count !== 6 && count !== 12) throw new TypeError("count must be 6 or 12");
    return this.submit(
      {
        style: "product_catalog",
        product_image: await this.base64(params.product, params.signal),
        quantity: count,
      },
      params,
    );
  }

  async order(orderId: number | string, signal?: AbortSignal): Promise<Order> {
    const { body } = await this.http.request<{ success: true; order: Order }>(
      "GET",
      `/api/v1/orders/${encodeURIComponent(String(orderId))}`,
      { signal },
    );
    return body.order;
  }

  /** Poll until the order is `completed` or `failed`. */
  async waitForOrder(
    order: number | string | { order_id: number } | { id: number },
    options: OrderWaitOptions = {},
  ): Promise<Order> {
    const orderId =
      typeof order === "object" ? ("order_id" in order ? order.order_id : order.id) : order;
    const timeoutMs = options.timeoutMs ?? 600_000;
    const deadline = Date.now() + timeoutMs;
    let interval = options.intervalMs ?? 1_000;
    const maxInterval = options.maxIntervalMs ?? 5_000;
    for (;;) {
      const current = await this.order(orderId, options.signal);
      options.onProgress?.(current);
      if (current.status === "completed" || current.status === "failed") {
        if (current.status === "failed" && options.throwOnFailure) throw orderFailed(current);
        return current;
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new WaitTimeoutError({
          status: 0,
          code: "WAIT_TIMEOUT",
          message: `order ${orderId} still ${current.status} after ${timeoutMs} ms`,
          dialect: "ftmvai",
          job: current,
        });
      }
      await sleep(Math.min(interval, left), options.signal);
      interval = Math.min(maxInterval, interval * 1.5);
    }
  }

  async account(signal?: AbortSignal): Promise<FtmvAIAccount> {
    const { body } = await this.http.request<FtmvAIAccount>("GET", "/api/v1/account", { signal });
    return body;
  }

  /** The result URLs of a completed order: the try-on result, or every catalog image. */
  resultUrls(order: Order): string[] {
    if (order.status === "failed") throw orderFailed(order);
    if (order.status !== "completed" || !order.results) {
      throw new TryonError({
        status: 0,
        code: "NOT_FINISHED",
        message: `order ${order.id} is ${order.status}; wait for it first`,
        dialect: "ftmvai",
      });
    }
    if (order.results.catalog_images) return [...order.results.catalog_images];
    return order.results.result_url ? [order.results.result_url] : [];
  }

  /** Every result image's bytes, in order. Throws `JobFailedError` for a failed order. */
  async download(order: Order, signal?: AbortSignal): Promise<Uint8Array[]> {
    const images: Uint8Array[] = [];
    for (const url of this.resultUrls(order)) images.push(await this.fetchBytes(url, signal));
    return images;
  }

  /**
   * Write the results to files (Node only): one path for a try-on, or a function from the
   * image's index (0-based) to a path for a catalog. Returns the paths written.
   */
  async save(order: Order, path: string | ((index: number) => string), signal?: AbortSignal): Promise<string[]> {
    const { writeFile } = await nodeFs();
    const images = await this.download(order, signal);
    const paths: string[] = [];
    for (const [index, image] of images.entries()) {
      const target = typeof path === "function" ? path(index) : images.length === 1 ? path : numbered(path, index);
      await writeFile(target, image);
      paths.push(target);
    }
    return paths;
  }

  private async submit(body: Record<string, unknown>, options: OrderOptions): Promise<Order> {
    const opts: Record<string, string> = {};
    if (options.quality !== undefined) opts.quality = options.quality;
    if (options.format !== undefined) opts.format = options.format;
    if (Object.keys(opts).length) body.options = opts;
    const { body: created } = await this.http.request<GenerateResponse>("POST", "/api/v1/generate", {
      body,
      retry: ORDER_RETRY,
      signal: options.signal,
    });
    const pending: Order = {
      id: created.order_id,
      status: created.status,
      credits_used: created.credits_used,
      progress: 0,
      created_at: created.created_at,
    };
    if (options.wait === false) return pending;
    return this.waitForOrder(pending, { signal: options.signal, ...options.waitOptions, throwOnFailure: true });
  }

  /** FtmvAI takes base64 only: a URL is downloaded here first. */
  private async base64(image: ImageInput, signal?: AbortSignal): Promise<string> {
    if (typeof image === "string" && isUrl(image)) image = await this.fetchBytes(image.trim(), signal);
    const encoded = await encodeImage(image);
    if (!("base64" in encoded)) throw new TypeError("expected image bytes");
    return encoded.base64;
  }

  private async fetchBytes(url: string, signal?: AbortSignal): Promise<Uint8Array> {
    const { body } = await this.http.request<Uint8Array>("GET", url, {
      anonymous: true,
      binary: true,
      retry: { transport: true, statuses: (status) => status >= 500 },
      signal,
    });
    return body;
  }
}

/** `shots/cup.png` → `shots/cup-1.png` for the first of several images. */
function numbered(path: string, index: number): string {
  const dot = path.lastIndexOf(".");
  const slash = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  if (dot <= slash + 1) return `${path}-${index + 1}`;
  return `${path.slice(0, dot)}-${index + 1}${path.slice(dot)}`;
}
