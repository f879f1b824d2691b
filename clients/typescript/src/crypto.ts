/**
 * Web Crypto wherever it lives: `globalThis.crypto` in browsers, Deno, Bun and Node ≥ 19;
 * Node 18 only has it as `require("node:crypto").webcrypto` unless started with
 * `--experimental-global-webcrypto`, so it is imported from there when needed.
 */

let cached: Crypto | undefined;

export async function webCrypto(): Promise<Crypto> {
  if (cached) return cached;
  const global = (globalThis as { crypto?: Crypto }).crypto;
  if (global?.subtle) {
    cached = global;
    return global;
  }
  try {
    const specifier = "node:crypto";
    const module = (await import(/* @vite-ignore */ /* webpackIgnore: true */ specifier)) as { webcrypto: Crypto };
    cached = module.webcrypto;
    return cached;
  } catch (cause) {
    throw new TypeError("Web Crypto (crypto.subtle) is not available on this platform", { cause });
  }
}

/** A fresh Idempotency-Key: a random UUID. */
export async function newIdempotencyKey(): Promise<string> {
  const crypto = await webCrypto();
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = ((bytes[6] ?? 0) & 0x0f) | 0x40;
  bytes[8] = ((bytes[8] ?? 0) & 0x3f) | 0x80;
  const hex = Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
