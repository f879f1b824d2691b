/**
 * @tryon-gateway/client: a zero-dependency client for tryon-gateway's two API dialects.
 *
 * `createClient({ apiKey })` picks the dialect from the key's shape, as the gateway does:
 * `fiv_live_…` / `fiv_test_…` keys speak FitInView, 64 lowercase hex characters FtmvAI.
 */

import { type Dialect } from "./errors.js";
import { FitInViewClient } from "./fitinview.js";
import { FtmvAIClient } from "./ftmvai.js";
import { type ClientOptions, resolveOptions } from "./http.js";

export * from "./errors.js";
export * from "./fitinview.js";
export * from "./ftmvai.js";
export { newIdempotencyKey } from "./crypto.js";
export { DEFAULT_BASE_URL, type ClientOptions, type RetryInfo } from "./http.js";
export { type ImageInput, fromBase64, toBase64 } from "./images.js";
export { type VerifyOptions, type WebhookEvent, type WebhookHeaders, hmacHex, verifyWebhook } from "./webhooks.js";

/** The dialect a key belongs to, or null if it has neither shape. */
export function dialectOf(apiKey: string): Dialect | null {
  if (apiKey.startsWith("fiv_")) return "fitinview";
  if (/^[0-9a-f]{64}$/.test(apiKey)) return "ftmvai";
  return null;
}

/** A client for the key's dialect (the key comes from `options.apiKey` or `TRYON_API_KEY`). */
export function createClient(options: ClientOptions & { apiKey: `fiv_${string}` }): FitInViewClient;
export function createClient(options?: ClientOptions): FitInViewClient | FtmvAIClient;
export function createClient(options: ClientOptions = {}): FitInViewClient | FtmvAIClient {
  const { apiKey } = resolveOptions(options);
  const dialect = dialectOf(apiKey);
  if (dialect === "fitinview") return new FitInViewClient({ ...options, apiKey });
  if (dialect === "ftmvai") return new FtmvAIClient({ ...options, apiKey });
  throw new TypeError("unrecognised API key: expected fiv_live_…/fiv_test_… (FitInView) or 64 hex (FtmvAI)");
}
