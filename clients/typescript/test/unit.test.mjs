// Offline checks of the built package (dist/): webhook signatures, key shapes, image
// encoding, error mapping. The gateway tests are in gateway.test.mjs.
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { createServer } from "node:net";
import { test } from "node:test";

import {
  APIConnectionError,
  AuthenticationError,
  FitInViewClient,
  FtmvAIClient,
  PaymentRequiredError,
  RateLimitError,
  WebhookVerificationError,
  createClient,
  dialectOf,
  errorFromResponse,
  fromBase64,
  hmacHex,
  toBase64,
  verifyWebhook,
} from "../dist/index.js";

const SECRET = "whsec_" + "s".repeat(43);
const HEX_KEY = "ab".repeat(32);

function signed(body, t) {
  const v1 = "sha256=" + createHmac("sha256", SECRET).update(body).digest("hex");
  const v2 = `t=${t},v1=` + createHmac("sha256", SECRET).update(`${t}.${body}`).digest("hex");
  return { "X-FitInView-Signature": v1, "X-FitInView-Signature-V2": v2, "X-FitInView-Timestamp": String(t) };
}

test("the dialect follows the key's shape", () => {
  assert.equal(dialectOf("fiv_live_abc"), "fitinview");
  assert.equal(dialectOf("fiv_test_abc"), "fitinview");
  assert.equal(dialectOf(HEX_KEY), "ftmvai");
  assert.equal(dialectOf("AB".repeat(32)), null);
  assert.ok(createClient({ apiKey: "fiv_test_x", baseUrl: "http://127.0.0.1:1" }) instanceof FitInViewClient);
  assert.ok(createClient({ apiKey: HEX_KEY, baseUrl: "http://127.0.0.1:1" }) instanceof FtmvAIClient);
  assert.throws(() => createClient({ apiKey: "sk_nope" }), TypeError);
});

test("base64 round-trips bytes", () => {
  const bytes = new Uint8Array(70_000).map((_, index) => index % 251);
  assert.deepEqual(fromBase64(toBase64(bytes)), bytes);
  assert.equal(toBase64(new Uint8Array([104, 105])), Buffer.from("hi").toString("base64"));
});

test("hmacHex is HMAC-SHA256 as Node computes it", async () => {
  assert.equal(await hmacHex(SECRET, "abc"), createHmac("sha256", SECRET).update("abc").digest("hex"));
});

test("a webhook signed v1 and v2 verifies, from a string, bytes or Headers", async () => {
  const body = '{"event":"tryon.completed","job_id":"job_1","status":"succeeded"}';
  const t = Math.floor(Date.now() / 1000);
  const headers = signed(body, t);
  assert.equal((await verifyWebhook(body, headers, SECRET)).job_id, "job_1");
  assert.equal((await verifyWebhook(new TextEncoder().encode(body), new Headers(headers), SECRET)).status, "succeeded");
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  assert.equal((await verifyWebhook(body, lower, SECRET)).event, "tryon.completed");
});

test("a webhook is refused when tampered, stale, unsigned or signed with another secret", async () => {
  const body = '{"event":"tryon.completed","job_id":"job_1"}';
  const t = Math.floor(Date.now() / 1000);
  const headers = signed(body, t);
  const refused = async (promise, code) => {
    await assert.rejects(promise, (error) => error instanceof WebhookVerificationError && error.code === code);
  };
  await refused(verifyWebhook(body + " ", headers, SECRET), "invalid_signature");
  await refused(verifyWebhook(body, headers, SECRET + "x"), "invalid_signature");
  await refused(verifyWebhook(body, headers, SECRET, { now: t + 301 }), "timestamp_out_of_tolerance");
  await verifyWebhook(body, headers, SECRET, { now: t + 299 });
  await refused(verifyWebhook(body, {}, SECRET), "missing_signature");
  const v1Only = { "X-FitInView-Signature": headers["X-FitInView-Signature"] };
  assert.equal((await verifyWebhook(body, v1Only, SECRET)).job_id, "job_1");
  await refused(verifyWebhook(body, v1Only, SECRET, { requireV2: true }), "missing_signature");
  const otherStamp = { ...headers, "X-FitInView-Timestamp": String(t - 1) };
  await refused(verifyWebhook(body, otherStamp, SECRET), "invalid_signature");
});

test("errors carry status, the dialect's code, message and request id", () => {
  const headers = new Headers({ "Retry-After": "7", "X-Request-Id": "req_1", "X-RateLimit-Limit": "10" });
  const limited = errorFromResponse("fitinview", 429, { detail: "Rate limit exceeded" }, headers);
  assert.ok(limited instanceof RateLimitError);
  assert.deepEqual([limited.status, limited.code, limited.message, limited.retryAfter, limited.requestId], [
    429,
    null,
    "Rate limit exceeded",
    7,
    "req_1",
  ]);
  const body = { success: false, error: { code: "INSUFFICIENT_CREDITS", message: "Insufficient credits" } };
  const poor = errorFromResponse("ftmvai", 402, body, new Headers());
  assert.ok(poor instanceof PaymentRequiredError);
  assert.equal(poor.code, "INSUFFICIENT_CREDITS");
  assert.ok(errorFromResponse("fitinview", 401, { detail: "Invalid API key" }, new Headers()) instanceof AuthenticationError);
});

test("an FtmvAI order is resent after a refused connection, never after a cut one", async () => {
  const listen = (handler) =>
    new Promise((resolve) => {
      const server = createServer(handler);
      server.listen(0, "127.0.0.1", () => resolve(server));
    });
  const closed = await listen(() => {});
  const closedPort = closed.address().port;
  await new Promise((resolve) => closed.close(resolve));
  const cutting = await listen((socket) => socket.once("data", () => socket.resetAndDestroy()));
  try {
    for (const [port, code, expectedRetries] of [
      [closedPort, "connection_refused", 2],
      [cutting.address().port, "connection_error", 0],
    ]) {
      const retries = [];
      const client = new FtmvAIClient({
        apiKey: HEX_KEY,
        baseUrl: `http://127.0.0.1:${port}`,
        maxRetries: 2,
        retryBaseDelayMs: 1,
        onRetry: (info) => retries.push(info),
      });
      await assert.rejects(client.generate({ person: "aGk=", clothing: "aGk=" }), (error) => {
        return error instanceof APIConnectionError && error.code === code && error.status === 0;
      });
      assert.equal(retries.length, expectedRetries, code);
    }
  } finally {
    cutting.close();
  }
});
