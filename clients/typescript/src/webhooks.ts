/**
 * Verifying FitInView webhooks with Web Crypto (Node ≥ 18, browsers, edge runtimes).
 *
 * v1 (`X-FitInView-Signature: sha256=<hex>`) is HMAC-SHA256 of the raw body keyed by the
 * key's `whsec_…` secret, as the FitInView document says. v2
 * (`X-FitInView-Signature-V2: t=<unix>,v1=<hex>`) signs `"{t}." + body`, so a receiver can
 * refuse replays by checking that `t` is recent. Every signature header present must check
 * out, at least one must be present, and when v2 is there its `t` must be within the
 * tolerance (and equal `X-FitInView-Timestamp` when that is sent too). Comparison is
 * `crypto.subtle.verify`, which is constant-time.
 */

import { webCrypto } from "./crypto.js";
import { WebhookVerificationError } from "./errors.js";

export type WebhookHeaders =
  | Headers
  | Record<string, string | string[] | undefined>
  | Iterable<[string, string]>;

export interface WebhookEvent {
  event: string;
  job_id: string;
  status: "succeeded" | "failed";
  result_url: string | null;
  error_code: string | null;
  error_message: string | null;
  duration_ms: number | null;
  completed_at: string | null;
  [field: string]: unknown;
}

export interface VerifyOptions {
  /** Largest allowed |now − t| for v2, in seconds. Default 300. */
  toleranceSeconds?: number;
  /** Refuse deliveries without the v2 (timestamped) signature. Default false. */
  requireV2?: boolean;
  /** "Now" in unix seconds (for tests and replays of stored deliveries). */
  now?: number;
}

const encoder = new TextEncoder();

function header(headers: WebhookHeaders, name: string): string | null {
  if (typeof Headers !== "undefined" && headers instanceof Headers) return headers.get(name);
  const entries: Iterable<[string, unknown]> =
    Symbol.iterator in headers
      ? (headers as Iterable<[string, string]>)
      : Object.entries(headers as Record<string, unknown>);
  for (const [key, value] of entries) {
    if (key.toLowerCase() !== name.toLowerCase() || value === undefined) continue;
    return Array.isArray(value) ? String(value[0]) : String(value);
  }
  return null;
}

function hexToBytes(hex: string): Uint8Array<ArrayBuffer> | null {
  if (!/^(?:[0-9a-fA-F]{2})+$/.test(hex)) return null;
  const bytes = new Uint8Array(hex.length / 2);
  for (let index = 0; index < bytes.length; index++) bytes[index] = parseInt(hex.slice(index * 2, index * 2 + 2), 16);
  return bytes;
}

async function subtle(): Promise<SubtleCrypto> {
  return (await webCrypto()).subtle;
}

async function hmacKey(secret: string): Promise<CryptoKey> {
  return (await subtle()).importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
    "verify",
  ]);
}

async function verifyHex(key: CryptoKey, hex: string, data: Uint8Array<ArrayBuffer>): Promise<boolean> {
  const signature = hexToBytes(hex);
  if (signature === null || signature.length !== 32) return false;
  return (await subtle()).verify("HMAC", key, signature, data);
}

function concat(first: Uint8Array, second: Uint8Array): Uint8Array<ArrayBuffer> {
  const joined = new Uint8Array(first.length + second.length);
  joined.set(first);
  joined.set(second, first.length);
  return joined;
}

function fail(code: string, message: string): never {
  throw new WebhookVerificationError({ status: 0, code, message, dialect: "fitinview" });
}

/** HMAC-SHA256 hex of `data` keyed by `secret` (for tests and for signing your own relays). */
export async function hmacHex(secret: string, data: string | Uint8Array): Promise<string> {
  const key = await hmacKey(secret);
  const bytes = typeof data === "string" ? encoder.encode(data) : new Uint8Array(data);
  const digest = new Uint8Array(await (await subtle()).sign("HMAC", key, bytes));
  return Array.from(digest, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/**
 * Check a delivery and return its parsed body. `body` must be the raw request body, byte for
 * byte (re-serialised JSON does not verify). Throws `WebhookVerificationError` otherwise.
 */
export async function verifyWebhook(
  body: string | Uint8Array | ArrayBuffer,
  headers: WebhookHeaders,
  secret: string,
  options: VerifyOptions = {},
): Promise<WebhookEvent> {
  if (!secret) throw new TypeError("the webhook secret (whsec_…) is required");
  // A copy: Web Crypto wants bytes over a plain ArrayBuffer, whatever backs the caller's view.
  const raw = typeof body === "string" ? encoder.encode(body) : new Uint8Array(body);
  const v1 = header(headers, "X-FitInView-Signature");
  const v2 = header(headers, "X-FitInView-Signature-V2");
  if (v1 === null && v2 === null) fail("missing_signature", "no X-FitInView-Signature header");
  if (v2 === null && options.requireV2) fail("missing_signature", "no X-FitInView-Signature-V2 header");
  const key = await hmacKey(secret);

  if (v1 !== null) {
    const match = /^sha256=([0-9a-fA-F]+)$/.exec(v1.trim());
    if (!match || !(await verifyHex(key, match[1] ?? "", raw))) {
      fail("invalid_signature", "X-FitInView-Signature does not match the body");
    }
  }
  if (v2 !== null) {
    const parts = new Map<string, string>();
    for (const item of v2.split(",")) {
      const at = item.indexOf("=");
      if (at > 0) parts.set(item.slice(0, at).trim(), item.slice(at + 1).trim());
    }
    const t = parts.get("t");
    const signature = parts.get("v1");
    if (!t || !/^\d+$/.test(t) || !signature) fail("invalid_signature", "X-FitInView-Signature-V2 is malformed");
    const stamp = header(headers, "X-FitInView-Timestamp");
    if (stamp !== null && stamp.trim() !== t) fail("invalid_signature", "X-FitInView-Timestamp differs from t");
    if (!(await verifyHex(key, signature, concat(encoder.encode(`${t}.`), raw)))) {
      fail("invalid_signature", "X-FitInView-Signature-V2 does not match the body");
    }
    const now = options.now ?? Math.floor(Date.now() / 1000);
    const tolerance = options.toleranceSeconds ?? 300;
    if (Math.abs(now - Number(t)) > tolerance) {
      fail("timestamp_out_of_tolerance", `the signature's timestamp is more than ${tolerance} s away from now`);
    }
  }
  const text = new TextDecoder().decode(raw);
  try {
    return JSON.parse(text) as WebhookEvent;
  } catch {
    return fail("invalid_body", "the signed body is not JSON");
  }
}
