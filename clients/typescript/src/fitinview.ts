/**
 * The FitInView dialect (`fiv_live_…` / `fiv_test_…` keys): `POST /api/v1/tryon`, polling,
 * listing, the account and credit purchases.
 *
 * Every submit carries an Idempotency-Key (the caller's or a fresh UUID) and every retry of it
 * reuses that key, so a retry after a cut connection, a 409, a 429 or a 5xx returns the first
 * request's job instead of charging again.
 */

import { JobFailedError, TryonError, WaitTimeoutError } from "./errors.js";
import { newIdempotencyKey } from "./crypto.js";
import { type ClientOptions, HttpClient, type RetryRule, SAFE_RETRY, sleep } from "./http.js";
import { type ImageInput, encodeImage, nodeFs } from "./images.js";

export type OutputSize = "1K" | "2K" | "4K";
export type JobStatus = "running" | "succeeded" | "failed";
export type Metadata = Record<string, string | number | boolean | null>;

/** A job as `GET /api/v1/tryon/{job_id}` answers it. */
export interface TryOnJob {
  job_id: string;
  status: JobStatus;
  result_url: string | null;
  error_code: string | null;
  error_message: string | null;
  cost_credits: number;
  duration_ms: number | null;
  created_at: string;
  completed_at: string | null;
  metadata: Metadata | null;
  seed: number | null;
  credits_refunded: number;
}

/** The answer to a submit: the job plus the balance and the sync-limit message. */
export interface TryOnSubmission extends TryOnJob {
  credits_remaining: number;
  message: string | null;
}

export interface TryOnPage {
  jobs: TryOnJob[];
  next_cursor: string | null;
}

export interface FitInViewAccount {
  name: string;
  credits_remaining: number;
  rate_limit_per_min: number;
  total_calls: number;
  tryon_cost_credits: Record<string, number>;
}

export interface Purchase {
  payment_intent_id: string;
  status: string;
  pack_slug: string;
  credits_added: number;
  credits_remaining: number;
  next_action: unknown;
}

export interface WaitOptions {
  /** Give up after this many ms (the job keeps running). Default 600 000. */
  timeoutMs?: number;
  /** First poll interval in ms; grows ×1.5 per poll. Default 500. */
  intervalMs?: number;
  /** Longest poll interval in ms. Default 5 000. */
  maxIntervalMs?: number;
  signal?: AbortSignal;
  /** Called after every poll (elapsed time is `Date.now()` minus your start). */
  onPoll?: (job: TryOnJob) => void;
  /** Throw `JobFailedError` when the job ends `failed` instead of returning it. Default false. */
  throwOnFailure?: boolean;
}

export interface TryonParams {
  person: ImageInput;
  /** One to three garments. */
  garments: ImageInput | ImageInput[];
  outputSize?: OutputSize;
  prompt?: string;
  negativePrompt?: string;
  styleHint?: string;
  seed?: number;
  metadata?: Metadata;
  webhookUrl?: string;
  /**
   * true (default): wait for the result, first in the gateway's sync wait, then by polling
   * if the job outlives it; a failed job throws `JobFailedError` (its `job` is the final
   * state). false: return the running job at once.
   */
  wait?: boolean;
  /** Reuse to make a later call the same request; default a fresh UUID per call. */
  idempotencyKey?: string;
  /** Options for the polling after a sync wait timed out. */
  waitOptions?: WaitOptions;
  signal?: AbortSignal;
}

export interface ListOptions {
  /** Page size (the gateway clamps it to 100). Default 50. */
  pageSize?: number;
  /** Only jobs with this status (filtered here; the API lists all). */
  status?: JobStatus;
  signal?: AbortSignal;
}

/** The error a failed job stands for (status 200: the API reports failures as answers). */
export function jobFailed(job: TryOnJob): JobFailedError {
  return new JobFailedError({
    status: 200,
    code: job.error_code ?? "generation_failed",
    message: job.error_message ?? `job ${job.job_id} ${job.status}`,
    dialect: "fitinview",
    job,
  });
}

export class FitInViewClient {
  readonly dialect = "fitinview" as const;
  readonly http: HttpClient;

  constructor(options: ClientOptions = {}) {
    this.http = new HttpClient("fitinview", options);
  }

  /** Submit a try-on; with `wait` (default) resolve with the succeeded job. */
  async tryon(params: TryonParams): Promise<TryOnSubmission> {
    const garments = Array.isArray(params.garments) ? params.garments : [params.garments];
    if (garments.length < 1 || garments.length > 3) throw new TypeError("one to three garments are required");
    const body: Record<string, unknown> = { wait: params.wait ?? true };
    const person = await encodeImage(params.person);
    if ("url" in person) body.person_url = person.url;
    else body.person_image_b64 = person.base64;
    const urls: string[] = [];
    const images: string[] = [];
    for (const garment of garments) {
      const encoded = await encodeImage(garment);
      if ("url" in encoded) urls.push(encoded.url);
      else images.push(encoded.base64);
    }
    if (urls.length) body.garment_urls = urls;
    if (images.length) body.garment_images_b64 = images;
    if (params.outputSize !== undefined) body.output_size = params.outputSize;
    if (params.prompt !== undefined) body.prompt = params.prompt;
    if (params.negativePrompt !== undefined) body.negative_prompt = params.negativePrompt;
    if (params.styleHint !== undefined) body.style_hint = params.styleHint;
    if (params.seed !== undefined) body.seed = params.seed;
    if (params.metadata !== undefined) body.metadata = params.metadata;
    if (params.webhookUrl !== undefined) body.webhook_url = params.webhookUrl;

    const idempotencyKey = params.idempotencyKey ?? (await newIdempotencyKey());
    const rule: RetryRule = SAFE_RETRY; // safe: the key makes every resend the same request
    const { body: submission } = await this.http.request<TryOnSubmission>("POST", "/api/v1/tryon", {
      body,
      headers: { "Idempotency-Key": idempotencyKey },
      retry: rule,
      signal: params.signal,
    });
    if (body.wait === false) return submission;
    let finished = submission;
    if (submission.status === "running") {
      // The sync wait ran out on the gateway: poll until the job ends.
      finished = { ...submission, ...(await this.waitFor(submission, { signal: params.signal, ...params.waitOptions })) };
    }
    if (finished.status === "failed") throw jobFailed(finished);
    return finished;
  }

  /** One job by id. */
  async get(jobId: string, signal?: AbortSignal): Promise<TryOnJob> {
    const { body } = await this.http.request<TryOnJob>("GET", `/api/v1/tryon/${encodeURIComponent(jobId)}`, {
      signal,
    });
    return body;
  }

  /** Poll until the job is `succeeded` or `failed`, backing off from 0.5 s to 5 s between polls. */
  async waitFor(job: string | Pick<TryOnJob, "job_id">, options: WaitOptions = {}): Promise<TryOnJob> {
    const jobId = typeof job === "string" ? job : job.job_id;
    const deadline = Date.now() + (options.timeoutMs ?? 600_000);
    let interval = options.intervalMs ?? 500;
    const maxInterval = options.maxIntervalMs ?? 5_000;
    for (;;) {
      const current = await this.get(jobId, options.signal);
      options.onPoll?.(current);
      if (current.status !== "running") {
        if (current.status === "failed" && options.throwOnFailure) throw jobFailed(current);
        return current;
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new WaitTimeoutError({
          status: 0,
          code: "wait_timeout",
          message: `job ${jobId} still running after ${options.timeoutMs ?? 600_000} ms`,
          dialect: "fitinview",
          job: current,
        });
      }
      await sleep(Math.min(interval, left), options.signal);
      interval = Math.min(maxInterval, interval * 1.5);
    }
  }

  /** One page of jobs, newest first. */
  async listPage(options: { limit?: number; cursor?: string | null; signal?: AbortSignal } = {}): Promise<TryOnPage> {
    const { body } = await this.http.request<TryOnPage>("GET", "/api/v1/tryon", {
      query: { limit: options.limit, cursor: options.cursor ?? undefined },
      signal: options.signal,
    });
    return body;
  }

  /** Every job of this key, newest first, fetching pages as the loop goes. */
  async *list(options: ListOptions = {}): AsyncGenerator<TryOnJob, void, undefined> {
    let cursor: string | null = null;
    do {
      const page: TryOnPage = await this.listPage({ limit: options.pageSize ?? 50, cursor, signal: options.signal });
      for (const job of page.jobs) {
        if (options.status === undefined || job.status === options.status) yield job;
      }
      cursor = page.next_cursor;
    } while (cursor);
  }

  async account(signal?: AbortSignal): Promise<FitInViewAccount> {
    const { body } = await this.http.request<FitInViewAccount>("GET", "/api/v1/account", { signal });
    return body;
  }

  /**
   * Buy a credit pack with a Stripe shared payment token. The gateway is idempotent on
   * (key, token), so retries are safe.
   */
  async purchaseCredits(params: {
    packSlug: string;
    sharedPaymentGrantedToken: string;
    signal?: AbortSignal;
  }): Promise<Purchase> {
    const { body } = await this.http.request<Purchase>("POST", "/api/v1/credits/purchase", {
      body: { pack_slug: params.packSlug, shared_payment_granted_token: params.sharedPaymentGrantedToken },
      signal: params.signal,
    });
    return body;
  }

  /** The result image's bytes (PNG). Throws `JobFailedError` for a failed job. */
  async download(job: TryOnJob | string, signal?: AbortSignal): Promise<Uint8Array> {
    let url: string;
    if (typeof job === "string") {
      url = job;
    } else {
      if (job.status === "failed") throw jobFailed(job);
      if (job.status !== "succeeded" || !job.result_url) {
        throw new TryonError({
          status: 0,
          code: "not_finished",
          message: `job ${job.job_id} is ${job.status}; wait for it first`,
          dialect: "fitinview",
        });
      }
      url = job.result_url;
    }
    const { body } = await this.http.request<Uint8Array>("GET", url, {
      anonymous: true,
      binary: true,
      retry: { transport: true, statuses: (status) => status >= 500 },
      signal,
    });
    return body;
  }

  /** Download the result and write it to `path` (Node only). */
  async save(job: TryOnJob | string, path: string, signal?: AbortSignal): Promise<string> {
    const { writeFile } = await nodeFs();
    await writeFile(path, await this.download(job, signal));
    return path;
  }
}
