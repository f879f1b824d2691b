// The built SDK (dist/) against a real tryon-gateway. tests/clients/test_typescript.py starts
// the gateways, mints the accounts and keys, and passes them in TRYON_TS_FIXTURE (JSON).
// Without it (a bare `npm test`) these tests are skipped.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { connect, createServer as createTcpServer } from "node:net";
import { describe, test } from "node:test";

import {
  AuthenticationError,
  BadRequestError,
  APIConnectionError,
  FitInViewClient,
  FtmvAIClient,
  JobFailedError,
  NotFoundError,
  PaymentRequiredError,
  RateLimitError,
  WebhookVerificationError,
  createClient,
  verifyWebhook,
} from "../dist/index.js";

const raw = process.env.TRYON_TS_FIXTURE;
const fx = raw ? JSON.parse(raw) : null;
const skip = fx ? false : "no gateway: run through tests/clients/test_typescript.py";
const PNG = [0x89, 0x50, 0x4e, 0x47];
// A flat photo fails either in the local backend (no person found) or at the quality gate
// (flat result). Whether that is refunded is the gateway's rule; the SDK must report it.
const FLAT_FAILURES = ["no_person_detected", "quality_check_failed"];

function fiv(key, options = {}) {
  return new FitInViewClient({ apiKey: key, baseUrl: fx.baseUrl, retryBaseDelayMs: 50, ...options });
}
function ftm(key, options = {}) {
  return new FtmvAIClient({ apiKey: key, baseUrl: fx.baseUrl, retryBaseDelayMs: 50, ...options });
}
const isPng = (bytes) => PNG.every((byte, index) => bytes[index] === byte);
const isJpeg = (bytes) => bytes[0] === 0xff && bytes[1] === 0xd8;
const file = (path) => readFile(path).then((buffer) => new Uint8Array(buffer));

describe("FitInView", { skip, timeout: 300_000 }, () => {
  test("a live try-on from URLs waits and downloads a PNG, charged once", async () => {
    const client = createClient({ apiKey: fx.keys.fivLive, baseUrl: fx.baseUrl });
    assert.ok(client instanceof FitInViewClient);
    const before = await client.account();
    const job = await client.tryon({
      person: fx.images.personUrl,
      garments: [fx.images.shirtUrl, fx.images.trousersUrl],
      outputSize: "1K",
      prompt: "studio light",
      seed: 42,
      metadata: { order: "ord_42", n: 1 },
    });
    assert.equal(job.status, "succeeded");
    assert.match(job.job_id, /^job_/);
    assert.equal(job.cost_credits, 8);
    assert.equal(job.seed, 42);
    assert.deepEqual(job.metadata, { order: "ord_42", n: 1 });
    assert.equal(job.credits_remaining, before.credits_remaining - 8);
    assert.ok(isPng(await client.download(job)));
    const after = await client.account();
    assert.equal(after.credits_remaining, before.credits_remaining - 8);
    assert.equal(after.total_calls, before.total_calls + 1);
    assert.deepEqual(after.tryon_cost_credits, { "1K": 8, "2K": 12, "4K": 20 });
  });

  test("images as base64, bytes and a Blob; wait=false then waitFor; get", async () => {
    const client = fiv(fx.keys.fivLive);
    const person = await file(fx.images.personPath);
    const shirt = await file(fx.images.shirtPath);
    const submitted = await client.tryon({
      person: Buffer.from(person).toString("base64"),
      garments: [new Blob([shirt], { type: "image/png" }), shirt.buffer.slice(shirt.byteOffset)],
      wait: false,
    });
    assert.equal(submitted.status, "running");
    assert.equal(submitted.cost_credits, 8);
    const polls = [];
    const done = await client.waitFor(submitted, { intervalMs: 100, onPoll: (job) => polls.push(job.status) });
    assert.equal(done.status, "succeeded");
    assert.equal(polls.at(-1), "succeeded");
    // Presigned URLs are signed afresh on every read; everything else is the same job.
    assert.deepEqual({ ...(await client.get(submitted.job_id)), result_url: null }, { ...done, result_url: null });
    const saved = await client.save(done, `${fx.tmpDir}/ts-result.png`);
    assert.ok(isPng(await file(saved)));
  });

  test("a test key answers a stock image with metadata and seed, costing nothing", async () => {
    const client = fiv(fx.keys.fivTest);
    const before = await client.account();
    const job = await client.tryon({ person: fx.images.personUrl, garments: fx.images.shirtUrl, seed: 7, metadata: { t: "x" } });
    assert.equal(job.status, "succeeded");
    assert.equal(job.cost_credits, 0);
    assert.deepEqual([job.seed, job.metadata], [7, { t: "x" }]);
    assert.ok(isPng(await client.download(job)));
    assert.equal((await client.account()).credits_remaining, before.credits_remaining);
    const purchase = await client.purchaseCredits({ packSlug: "starter", sharedPaymentGrantedToken: "spt_ts_1" });
    assert.equal(purchase.status, "succeeded");
    assert.equal(purchase.pack_slug, "starter");
  });

  test("list iterates every page, newest first, and filters by status", async () => {
    const client = fiv(fx.keys.fivTest);
    const ids = [];
    for (let index = 0; index < 3; index++) {
      ids.push((await client.tryon({ person: fx.images.personUrl, garments: fx.images.shirtUrl, wait: false })).job_id);
    }
    for (const id of ids) await client.waitFor(id, { intervalMs: 100 });
    const seen = [];
    for await (const job of client.list({ pageSize: 2 })) seen.push(job.job_id);
    assert.equal(seen.length, 4, "the earlier test's job and these three, over two pages");
    assert.equal(new Set(seen).size, seen.length, "no job twice across pages");
    assert.deepEqual(seen.slice(0, 3), [...ids].reverse());
    const page = await client.listPage({ limit: 2 });
    assert.equal(page.jobs.length, 2);
    assert.ok(page.next_cursor);
    const failed = [];
    for await (const job of client.list({ status: "failed" })) failed.push(job);
    assert.deepEqual(failed, []);
  });

  test("a job failing on a flat photo reports failure and refund, and its download throws JobFailedError", async () => {
    const client = fiv(fx.keys.fivFail);
    const before = await client.account();
    let job = null;
    await assert.rejects(
      client.tryon({ person: await file(fx.images.flatPersonPath), garments: await file(fx.images.flatGarmentPath) }),
      (error) => {
        assert.ok(error instanceof JobFailedError);
        job = error.job;
        assert.deepEqual([error.status, error.code, error.message], [200, job.error_code, job.error_message]);
        return true;
      },
    );
    assert.equal(job.status, "failed");
    assert.equal(job.error_code, "generation_failed");
    assert.ok(FLAT_FAILURES.includes(job.error_message), job.error_message);
    assert.equal(job.cost_credits, 8);
    assert.ok([0, 8].includes(job.credits_refunded));
    const balance = before.credits_remaining - 8 + job.credits_refunded;
    assert.equal(job.credits_remaining, balance);
    assert.equal((await client.account()).credits_remaining, balance);
    await assert.rejects(client.download(job), (error) => {
      assert.ok(error instanceof JobFailedError);
      assert.deepEqual([error.code, error.message, error.job.job_id], ["generation_failed", job.error_message, job.job_id]);
      return true;
    });
    const failed = [];
    for await (const listed of client.list({ status: "failed" })) failed.push(listed.job_id);
    assert.deepEqual(failed, [job.job_id]);
  });

  test("402, 401, 404 and 400 are thrown as the error tree", async () => {
    await assert.rejects(fiv(fx.keys.fivPoor).tryon({ person: fx.images.personUrl, garments: fx.images.shirtUrl }), (error) => {
      assert.ok(error instanceof PaymentRequiredError);
      assert.deepEqual([error.status, error.code, error.message], [402, null, "Insufficient credits"]);
      return true;
    });
    await assert.rejects(fiv("fiv_live_nope").account(), (error) => error instanceof AuthenticationError && error.status === 401);
    await assert.rejects(fiv(fx.keys.fivLive).get("job_doesnotexist"), (error) => error instanceof NotFoundError && error.code === null);
    await assert.rejects(
      fiv(fx.keys.fivLive).tryon({ person: fx.images.personUrl, garments: fx.images.shirtUrl, seed: -1 }),
      (error) => error instanceof BadRequestError && error.status === 400 && /seed/.test(error.message),
    );
  });

  test("a connection cut after the request was sent is retried with the same key and charged once", async () => {
    const upstream = new URL(fx.baseUrl);
    let dropped = 0;
    const proxy = createTcpServer((client) => {
      const server = connect(Number(upstream.port), upstream.hostname);
      let drop = null;
      client.once("data", (first) => {
        drop = dropped === 0 && first.subarray(0, 5).toString() === "POST ";
        if (drop) dropped += 1;
        server.write(first);
        client.pipe(server);
        server.on("data", (chunk) => {
          if (drop) client.resetAndDestroy();
          else client.write(chunk);
        });
      });
      server.on("end", () => client.end());
      server.on("error", () => client.destroy());
      client.on("error", () => server.destroy());
      client.on("close", () => server.destroy());
    });
    await new Promise((resolve) => proxy.listen(0, "127.0.0.1", resolve));
    try {
      const retries = [];
      const direct = fiv(fx.keys.fivRetry);
      const before = await direct.account();
      const client = new FitInViewClient({
        apiKey: fx.keys.fivRetry,
        baseUrl: `http://127.0.0.1:${proxy.address().port}`,
        retryBaseDelayMs: 50,
        onRetry: (info) => retries.push(info),
      });
      const job = await client.tryon({
        person: fx.images.personUrl,
        garments: fx.images.shirtUrl,
        idempotencyKey: "ts-retry-once",
      });
      assert.equal(dropped, 1);
      assert.equal(retries.length, 1);
      assert.ok(retries[0].error instanceof APIConnectionError);
      assert.deepEqual([retries[0].status, retries[0].idempotencyKey], [0, "ts-retry-once"]);
      assert.equal(job.status, "succeeded");
      const after = await direct.account();
      assert.equal(after.credits_remaining, before.credits_remaining - 8, "charged exactly once");
      assert.equal(after.total_calls, before.total_calls + 1);
      const jobs = [];
      for await (const listed of direct.list()) jobs.push(listed.job_id);
      assert.deepEqual(jobs, [job.job_id]);
    } finally {
      proxy.close();
    }
  });

  test("without retries a cut connection is an APIConnectionError", async () => {
    const dead = createTcpServer((socket) => socket.resetAndDestroy());
    await new Promise((resolve) => dead.listen(0, "127.0.0.1", resolve));
    try {
      const client = new FitInViewClient({ apiKey: fx.keys.fivLive, baseUrl: `http://127.0.0.1:${dead.address().port}`, maxRetries: 0 });
      await assert.rejects(client.account(), (error) => error instanceof APIConnectionError && error.status === 0);
    } finally {
      dead.close();
    }
  });

  test("a 429 carries Retry-After; one asking too long a wait is thrown, never charged", async () => {
    const client = new FitInViewClient({ apiKey: fx.keys.fivLimited, baseUrl: fx.limitedBaseUrl, maxRetryAfterSeconds: 0 });
    const before = await client.account();
    assert.equal(before.rate_limit_per_min, 2);
    const params = { person: fx.images.personUrl, garments: fx.images.shirtUrl, wait: false };
    // Two submits a minute, in fixed windows: five in a row see a 429 even across a boundary.
    let accepted = 0;
    let limited = null;
    for (let index = 0; index < 5 && limited === null; index++) {
      try {
        await client.tryon(params);
        accepted += 1;
      } catch (error) {
        limited = error;
      }
    }
    assert.ok(limited instanceof RateLimitError, String(limited));
    assert.deepEqual([limited.status, limited.code, limited.message], [429, null, "Rate limit exceeded"]);
    assert.ok(limited.retryAfter >= 1 && limited.retryAfter <= 60, `Retry-After ${limited.retryAfter}`);
    assert.ok(accepted >= 2 && accepted <= 4);
    assert.equal((await client.account()).credits_remaining, before.credits_remaining - 8 * accepted);
  });

  test("a webhook delivered by the gateway is verified by the SDK (v1 and v2)", async () => {
    let resolveDelivery;
    const delivered = new Promise((resolve) => (resolveDelivery = resolve));
    const receiver = createServer((request, response) => {
      const chunks = [];
      request.on("data", (chunk) => chunks.push(chunk));
      request.on("end", () => {
        response.end("ok");
        resolveDelivery({ body: Buffer.concat(chunks), headers: request.headers });
      });
    });
    await new Promise((resolve) => receiver.listen(fx.hookPort, "127.0.0.1", resolve));
    try {
      const client = fiv(fx.keys.fivTest);
      const job = await client.tryon({
        person: fx.images.personUrl,
        garments: fx.images.shirtUrl,
        webhookUrl: `http://127.0.0.1:${fx.hookPort}/hook`,
        wait: false,
      });
      const { body, headers } = await delivered;
      assert.ok(headers["x-fitinview-signature-v2"], "the gateway sends v2 too");
      const event = await verifyWebhook(body, headers, fx.keys.fivTestSecret);
      assert.deepEqual([event.event, event.job_id, event.status], ["tryon.completed", job.job_id, "succeeded"]);
      await assert.rejects(
        verifyWebhook(Buffer.concat([body, Buffer.from(" ")]), headers, fx.keys.fivTestSecret),
        (error) => error instanceof WebhookVerificationError && error.code === "invalid_signature",
      );
      await assert.rejects(verifyWebhook(body, headers, "whsec_other"), WebhookVerificationError);
      const t = Number(headers["x-fitinview-timestamp"]);
      await assert.rejects(
        verifyWebhook(body, headers, fx.keys.fivTestSecret, { now: t + 3600 }),
        (error) => error.code === "timestamp_out_of_tolerance",
      );
    } finally {
      receiver.close();
    }
  });
});

describe("FtmvAI", { skip, timeout: 300_000 }, () => {
  test("a live virtual try-on from bytes and a URL: order, progress, JPEG result, X-RateLimit-*", async () => {
    const client = createClient({ apiKey: fx.keys.ftmLive, baseUrl: fx.baseUrl });
    assert.ok(client instanceof FtmvAIClient);
    const before = await client.account();
    assert.equal(before.success, true);
    const created = await client.generate({
      person: await file(fx.images.personPath),
      clothing: fx.images.shirtUrl,
      quality: "standard",
      wait: false,
    });
    assert.equal(created.status, "pending");
    assert.equal(created.credits_used, 1);
    assert.ok(Number.isInteger(created.id));
    assert.ok(client.rateLimit && client.rateLimit.limit > 0 && client.rateLimit.reset > Date.now() / 1000);
    const progress = [];
    const order = await client.waitForOrder(created, { intervalMs: 100, onProgress: (o) => progress.push(o.progress) });
    assert.equal(order.status, "completed");
    assert.equal(order.id, created.id);
    const percents = progress.filter((value) => value !== undefined);
    assert.ok(percents.every((value, index) => value >= (percents[index - 1] ?? 0) && value <= 100), String(percents));
    assert.ok(order.results.person_url && order.results.clothing_url && order.results.result_url);
    const [image] = await client.download(order);
    assert.ok(isJpeg(image));
    const again = await client.order(created.id);
    assert.deepEqual([again.id, again.status, again.completed_at], [order.id, order.status, order.completed_at]);
    const after = await client.account();
    assert.equal(after.account.credits_remaining, before.account.credits_remaining - 1);
    assert.equal(after.account.api_calls_total, before.account.api_calls_total + 1);
  });

  test("a product catalog of 6 PNG shots", async () => {
    const client = ftm(fx.keys.ftmLive);
    const order = await client.catalog({
      product: await file(fx.images.productPath),
      count: 6,
      format: "png",
      quality: "standard",
      waitOptions: { intervalMs: 100 },
    });
    assert.equal(order.credits_used, 24);
    assert.equal(order.status, "completed");
    assert.equal(order.results.catalog_images.length, 6);
    const paths = await client.save(order, `${fx.tmpDir}/shot.png`);
    assert.equal(paths.length, 6);
    assert.equal(paths[0], `${fx.tmpDir}/shot-1.png`);
    for (const path of paths) assert.ok(isPng(await file(path)));
  });

  test("a test key completes for free", async () => {
    const client = ftm(fx.keys.ftmTest);
    const before = await client.account();
    const order = await client.generate({ person: await file(fx.images.personPath), clothing: await file(fx.images.shirtPath) });
    assert.equal(order.credits_used, 0);
    assert.equal(order.status, "completed");
    assert.equal((await client.download(order)).length, 1);
    assert.equal((await client.account()).account.credits_remaining, before.account.credits_remaining);
  });

  test("a failed order carries its error and its download throws JobFailedError", async () => {
    const client = ftm(fx.keys.ftmLive);
    let order = null;
    await assert.rejects(
      client.generate({ person: await file(fx.images.flatPersonPath), clothing: await file(fx.images.flatGarmentPath) }),
      (error) => {
        assert.ok(error instanceof JobFailedError);
        order = error.job;
        return error.code === order.error.code && error.dialect === "ftmvai";
      },
    );
    assert.equal(order.status, "failed");
    const polled = await client.waitForOrder(order.id);
    assert.deepEqual([polled.status, polled.error], [order.status, order.error]);
    await assert.rejects(client.waitForOrder(order.id, { throwOnFailure: true }), JobFailedError);
    assert.equal(order.error.code, "GENERATION_FAILED");
    assert.ok(FLAT_FAILURES.includes(order.error.message), order.error.message);
    assert.ok([undefined, 1].includes(order.credits_refunded));
    await assert.rejects(client.download(order), (error) => error instanceof JobFailedError && error.code === "GENERATION_FAILED");
  });

  test("402 INSUFFICIENT_CREDITS, 404 ORDER_NOT_FOUND, 401 UNAUTHORIZED", async () => {
    await assert.rejects(
      ftm(fx.keys.ftmPoor).generate({ person: await file(fx.images.personPath), clothing: await file(fx.images.shirtPath) }),
      (error) => {
        assert.ok(error instanceof PaymentRequiredError);
        assert.deepEqual([error.status, error.code, error.dialect], [402, "INSUFFICIENT_CREDITS", "ftmvai"]);
        assert.deepEqual(error.body.error.details, { credits_required: 1, credits_available: 0 });
        return true;
      },
    );
    await assert.rejects(ftm(fx.keys.ftmLive).order(999_999_999), (error) => error instanceof NotFoundError && error.code === "ORDER_NOT_FOUND");
    await assert.rejects(ftm("cd".repeat(32)).account(), (error) => error instanceof AuthenticationError && error.code === "UNAUTHORIZED");
  });

  test("a 429 for the plan's orders in progress is waited out (Retry-After) and then accepted", async () => {
    const retries = [];
    const client = new FtmvAIClient({
      apiKey: fx.keys.ftmFree,
      baseUrl: fx.limitedBaseUrl,
      maxRetries: 300,
      onRetry: (info) => retries.push(info),
    });
    const person = await file(fx.images.personPath);
    const shirt = await file(fx.images.shirtPath);
    const first = await client.generate({ person, clothing: shirt, quality: "standard", wait: false });
    const second = await client.generate({ person, clothing: shirt, quality: "standard", wait: false });
    assert.ok(retries.length >= 1, "the second order had to wait for the first");
    for (const retry of retries) {
      assert.ok(retry.error instanceof RateLimitError);
      assert.deepEqual([retry.status, retry.error.code, retry.delayMs], [429, "RATE_LIMITED", retry.error.retryAfter * 1000]);
      assert.equal(retry.error.body.error.details.limit, "concurrent");
    }
    const done = await client.waitForOrder(first, { intervalMs: 100 });
    assert.equal(done.status, "completed");
    assert.equal((await client.waitForOrder(second, { intervalMs: 100 })).status, "completed");
    const account = await client.account();
    assert.equal(account.account.plan, "free");
    assert.equal(client.rateLimit.limit, account.rate_limit.limit);
    assert.equal(account.account.api_calls_total, 2);
  });
});
