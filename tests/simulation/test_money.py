"""A seeded, replayable simulation of the money (issue 11), with Hypothesis's stateful testing.

Each example opens fresh accounts on one real deployment (``serve`` and ``worker`` processes,
see conftest.py) and runs a random sequence of what clients, Stripe and operators do, in any
order: FitInView submits (sync and async, with and without Idempotency-Keys, replays, the
same key with another body, test keys, several at once on one balance), FtmvAI try-ons and
6/12-image catalogs, purchases with every kind of Shared Payment Token, Stripe events delivered
late, early, twice and out of order, operator grants and debits, cancels, goodwill refunds,
re-runs, key disables and, optionally, a SIGKILLed worker.

After every step the money invariants (tests/support/invariants.py) are checked against the
database. A model of each account (opening balance + grants + purchases - debits + refunds -
reversals, as the simulation knows them) is compared exactly with the balance the admin API
reports whenever the deployment is settled (all jobs finished, all Stripe events processed):
at a ``settle`` step and at the end of each example. The end of the run checks everything once
more, including ``tryon-gateway ledger verify``.

Hypothesis shrinks a failure to the shortest sequence that reproduces it and prints it; the
seed is printed too. Knobs (environment):

- ``TRYON_SIM_STEPS``: operations in total (default 60: the short CI run; 5000 for the long one),
- ``TRYON_SIM_SEED``: replay a run (default: a fresh random seed, printed),
- ``TRYON_SIM_SHRINK``: ``0`` reports the first failing sequence as found, unshrunk (shrinking
  replays it many times against the deployment: minutes),
- ``TRYON_SIM_KILLS``: ``1`` lets an example SIGKILL the worker once (default: only when
  ``TRYON_SIM_STEPS`` > 500, since each kill costs a worker boot and a job deadline).

The long run: ``TRYON_SIM_STEPS=5000 python -m pytest tests/simulation -p no:cacheprovider``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import asyncpg
import httpx
from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from engine.config import DEFAULT_PACKS
from engine.prices import DEFAULT_PRICES
from gateway.settings import Settings
from tests.simulation.conftest import JOB_DEADLINE_SECONDS, STRIPE_SECRET, Deployment
from tests.support.fake_stripe import (
    event,
    intent_id,
    lost_dispute,
    refunded_charge,
    signed_event,
    succeeded_intent,
)
from tests.support.gateway import ADMIN_TOKEN, fixture_b64
from tests.support.image_host import ImageHost
from tests.support.invariants import assert_money_invariants, money_violations

T = TypeVar("T")
STEPS = int(os.environ.get("TRYON_SIM_STEPS", "60"))
STEPS_PER_EXAMPLE = 20
SETTLE_EVERY = 5
SHRINK = os.environ.get("TRYON_SIM_SHRINK", "1") == "1"
KILLS = os.environ.get("TRYON_SIM_KILLS", "1" if STEPS > 500 else "0") == "1"
PACK_CREDITS = {pack.slug: pack.credits for pack in DEFAULT_PACKS}
PACK_AMOUNT = {pack.slug: pack.amount for pack in DEFAULT_PACKS}
REFUND_ON = frozenset(Settings().refund_on)
SETTLE_SECONDS = 60 + (2 * JOB_DEADLINE_SECONDS if KILLS else 0)
FTM_PRICES = {
    "tryon": DEFAULT_PRICES["ftmvai.tryon.standard"],
    "catalog6": DEFAULT_PRICES["ftmvai.catalog.6"],
    "catalog12": DEFAULT_PRICES["ftmvai.catalog.12"],
}


@dataclass(eq=False)
class Account:
    """One account as the simulation knows it; ``expected`` moves only with what it was told."""

    name: str
    dialect: str
    id: int
    live_key: str
    live_key_id: int
    test_key: str | None
    expected: int
    live_disabled: bool = False

    def __repr__(self) -> str:
        return self.name


@dataclass(eq=False)
class Job:
    account: Account
    ref: str
    """``job_…`` (FitInView) or the order id (FtmvAI): what ``/admin/jobs/{ref}`` takes."""
    cost: int
    live: bool
    key: str = ""
    body: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    cancelled: bool = False
    goodwill: bool = False

    def __repr__(self) -> str:
        return f"Job({self.ref or 'refused'})"

    @property
    def accepted(self) -> bool:
        """Refused submits are kept too (as ``Job(refused)``): a rule's outcome must never change
        what Hypothesis draws next, or it calls the data generation flaky."""
        return bool(self.ref)


@dataclass(eq=False)
class Payment:
    """A Shared Payment Token's purchase, and what Stripe has (and has told the gateway) about it."""

    account: Account
    token: str
    pack: str
    bought: bool = False
    completed_at_stripe: bool = False
    granted_seen: bool = False
    """The purchase call answered ``succeeded``, or the ``payment_intent.succeeded`` event was delivered."""
    reversed_seen: bool = False
    """A full refund or a lost dispute was delivered."""

    def __repr__(self) -> str:
        return f"Payment({self.token})"

    @property
    def net(self) -> int:
        """What the payment must be worth once every delivered event is processed, in any order."""
        return PACK_CREDITS[self.pack] if self.granted_seen and not self.reversed_seen else 0


@dataclass(eq=False)
class StripeEvent:
    payment: Payment
    body: dict[str, Any]
    delivered: bool = False

    def __repr__(self) -> str:
        return f"{self.body['type']}({self.payment.token})"


class Tally:
    """Across examples: how much ran (printed at the end)."""

    steps = 0
    examples = 0
    accepted_jobs = 0
    settles = 0
    failures: ClassVar[list[str]] = []
    seconds: ClassVar[dict[str, list[Any]]] = {}
    """Per step name: how often it ran and the seconds it took."""


def recorded(step: Callable[..., T]) -> Callable[..., T]:
    """Remember a step's failure: Hypothesis reports a failure that doesn't happen again on replay
    (a race) only as "flaky", and the run's report should still say what failed."""

    @functools.wraps(step)
    def run(*args: Any, **kwargs: Any) -> T:
        started = time.monotonic()
        try:
            return step(*args, **kwargs)
        except Exception as exc:
            Tally.failures.append(f"{step.__name__}: {type(exc).__name__}: {exc}")
            raise
        finally:
            spent = Tally.seconds.setdefault(step.__name__, [0, 0.0])
            spent[0] += 1
            spent[1] += time.monotonic() - started

    return run


class MoneyMachine(RuleBasedStateMachine):
    """The rules are synchronous (httpx, and asyncpg through ``asyncio.run``): Hypothesis runs
    them in a thread of its own while the test's event loop keeps serving the image host and the
    fake Stripe the deployment calls."""

    jobs = Bundle("jobs")
    payments = Bundle("payments")

    def __init__(self, deployment: Deployment, image_host: ImageHost) -> None:
        super().__init__()
        self.deployment = deployment
        self.image_host = image_host
        self.http = httpx.Client(base_url=deployment.base_url, timeout=90)
        self.accounts: dict[str, Account] = {}
        self.all_jobs: list[Job] = []
        self.all_payments: list[Payment] = []
        self.outbox: list[StripeEvent] = []
        self.killed = False
        self.since_settle = 0
        """Steps since the last settle: a settle waits for everything, so not more than one in a few."""
        # one loop and connection per example for the database checks (a connect per step is slow)
        self.loop = asyncio.new_event_loop()
        self.db: asyncpg.Connection = self.loop.run_until_complete(asyncpg.connect(deployment.database_url))
        Tally.examples += 1

    # plumbing ---------------------------------------------------------------------------
    def admin(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return self.http.request(
            method, "/admin" + path, json=body, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )

    def admin_ok(self, method: str, path: str, body: Any = None) -> Any:
        response = self.admin(method, path, body)
        assert response.status_code in (200, 201), (method, path, response.status_code, response.text)
        return response.json()

    def open_account(self, name: str, dialect: str, credits: int, with_test_key: bool) -> Account:
        created = self.admin_ok("POST", "/accounts", {"name": name, "dialect": dialect, "credits": credits})
        live = self.admin_ok("POST", f"/accounts/{created['id']}/keys", {"mode": "live", "name": "live"})
        test = None
        if with_test_key:
            test = self.admin_ok("POST", f"/accounts/{created['id']}/keys", {"mode": "test", "name": "t"})[
                "key"
            ]
        account = Account(name, dialect, created["id"], live["key"], live["id"], test, credits)
        self.accounts[name] = account
        return account

    def tryon_body(self, size: str, wait: bool) -> dict[str, Any]:
        return {
            "person_url": self.image_host.url("/person.png"),
            "garment_urls": [self.image_host.url("/shirt.png")],
            "output_size": size,
            "wait": wait,
        }

    def post_tryon(self, key: str, body: dict[str, Any], idempotency_key: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        return self.http.post("/api/v1/tryon", json=body, headers=headers)

    def accepted_fitinview(
        self, account: Account, response: httpx.Response, *, live: bool, size: str, **job: Any
    ) -> Job:
        """Check a FitInView submit's answer against the model; the new job (or a refused one)."""
        refused = Job(account, "", 0, live)
        if account.live_disabled and live:
            assert response.status_code in (401, 403), ("a disabled key was served", response.text)
            return refused
        if response.status_code == 402:
            assert live, "a test-key job was refused for credits"
            return refused
        if response.status_code == 429:
            return refused
        assert response.status_code == 200, (response.status_code, response.text)
        answer = response.json()
        cost = DEFAULT_PRICES[f"fitinview.tryon.{size}"] if live else 0
        assert answer["cost_credits"] == cost, answer
        made = Job(account, answer["job_id"], cost, live, **job)
        if live:
            account.expected -= cost
        self.all_jobs.append(made)
        Tally.accepted_jobs += 1
        return made

    def deliver(self, body: dict[str, Any]) -> None:
        payload, header = signed_event(STRIPE_SECRET, body)
        response = self.http.post(
            "/api/v1/stripe/webhook",
            content=payload,
            headers={"Stripe-Signature": header, "Content-Type": "application/json"},
        )
        assert response.status_code == 200, response.text

    # setup ------------------------------------------------------------------------------
    @initialize(fiv_a=st.integers(0, 40), fiv_b=st.integers(0, 40), ftm=st.integers(0, 80))
    @recorded
    def open_accounts(self, fiv_a: int, fiv_b: int, ftm: int) -> None:
        self.open_account("fiv_a", "fitinview", fiv_a, with_test_key=True)
        self.open_account("fiv_b", "fitinview", fiv_b, with_test_key=True)
        self.open_account("ftm", "ftmvai", ftm, with_test_key=False)

    # jobs -------------------------------------------------------------------------------
    @rule(
        target=jobs,
        who=st.sampled_from(["fiv_a", "fiv_b"]),
        test=st.booleans(),
        wait=st.booleans(),
        size=st.sampled_from(["1K", "2K", "4K"]),
        with_key=st.booleans(),
    )
    @recorded
    def submit_fitinview(self, who: str, test: bool, wait: bool, size: str, with_key: bool) -> Job:
        account = self.accounts[who]
        key = account.test_key if test and account.test_key else account.live_key
        live = key == account.live_key
        body = self.tryon_body(size, wait)
        idempotency_key = str(uuid.uuid4()) if with_key else None
        response = self.post_tryon(key, body, idempotency_key)
        made = self.accepted_fitinview(
            account, response, live=live, size=size, key=key, body=body, idempotency_key=idempotency_key
        )
        return made

    @rule(job=jobs, other_body=st.booleans())
    @recorded
    def replay(self, job: Job, other_body: bool) -> None:
        """The same Idempotency-Key again: the same job, charged once; with another body, 422."""
        if not job.accepted or job.idempotency_key is None or (job.account.live_disabled and job.live):
            return
        body = {**job.body, "seed": 7} if other_body else job.body
        response = self.post_tryon(job.key, body, job.idempotency_key)
        if other_body:
            assert response.status_code == 422, response.text
            return
        assert response.status_code == 200, response.text
        assert response.json()["job_id"] == job.ref, (response.json(), job)

    @rule(target=jobs, who=st.sampled_from(["fiv_a", "fiv_b"]), count=st.integers(2, 5))
    @recorded
    def submit_at_once(self, who: str, count: int) -> Any:
        """Several async submits at the same moment on one balance: never overdrawn."""
        account = self.accounts[who]
        body = self.tryon_body("2K", False)

        def one(_: int) -> httpx.Response:
            return self.post_tryon(account.live_key, body, str(uuid.uuid4()))

        with ThreadPoolExecutor(count) as pool:
            responses = list(pool.map(one, range(count)))
        made = [self.accepted_fitinview(account, response, live=True, size="2K") for response in responses]
        return multiple(*made)

    @rule(target=jobs, kind=st.sampled_from(["tryon", "catalog6", "catalog12"]))
    @recorded
    def submit_ftmvai(self, kind: str) -> Job:
        account = self.accounts["ftm"]
        body: dict[str, Any]
        if kind == "tryon":
            body = {
                "style": "virtual_tryon",
                "person_image": fixture_b64("person-astronaut.png"),
                "clothing_image": fixture_b64("garment-shirt-red-stripes.png"),
            }
        else:
            body = {
                "style": "product_catalog",
                "product_image": fixture_b64("product-coffee-cup.png"),
                "quantity": 6 if kind == "catalog6" else 12,
            }
        response = self.http.post(
            "/api/v1/generate", json=body, headers={"Authorization": f"Bearer {account.live_key}"}
        )
        refused = Job(account, "", 0, True)
        if account.live_disabled:
            assert response.status_code in (401, 403), ("a disabled key was served", response.text)
            return refused
        if response.status_code in (402, 429):
            return refused
        assert response.status_code == 202, (response.status_code, response.text)
        answer = response.json()
        assert answer["credits_used"] == FTM_PRICES[kind], answer
        account.expected -= FTM_PRICES[kind]
        made = Job(account, str(answer["order_id"]), FTM_PRICES[kind], True)
        self.all_jobs.append(made)
        Tally.accepted_jobs += 1
        return made

    # operators --------------------------------------------------------------------------
    @rule(who=st.sampled_from(["fiv_a", "fiv_b", "ftm"]), amount=st.integers(-30, 60).filter(bool))
    @recorded
    def adjust_credits(self, who: str, amount: int) -> None:
        account = self.accounts[who]
        response = self.admin("POST", f"/accounts/{account.id}/credits", {"amount": amount, "reason": "sim"})
        if response.status_code == 200:
            account.expected += amount
            return
        assert amount < 0 and response.status_code in (402, 409, 422), (response.status_code, response.text)

    @rule(job=jobs)
    @recorded
    def cancel(self, job: Job) -> None:
        if not job.accepted:
            return
        response = self.admin("POST", f"/jobs/{job.ref}/cancel", {"reason": "sim cancel"})
        if response.status_code == 200:
            assert not job.cancelled, "a job was cancelled twice"
            assert response.json()["status"] == "failed", response.json()
            job.cancelled = True
            return
        assert response.status_code == 409, (response.status_code, response.text)

    @rule(job=jobs)
    @recorded
    def goodwill_refund(self, job: Job) -> None:
        if not job.accepted:
            return
        response = self.admin("POST", f"/jobs/{job.ref}/refund", {"reason": "sim goodwill"})
        if response.status_code == 200:
            assert job.live and job.cost > 0, ("a free job was refunded", job)
            assert not (job.cancelled or job.goodwill), ("a job was refunded twice", job)
            job.goodwill = True
            return
        assert response.status_code == 409, (response.status_code, response.text)

    @rule(target=jobs, job=jobs)
    @recorded
    def rerun(self, job: Job) -> Job:
        refused = Job(job.account, "", 0, False)
        if not job.accepted:
            return refused
        response = self.admin("POST", f"/jobs/{job.ref}/rerun", {"reason": "sim rerun"})
        if response.status_code != 201:
            assert response.status_code == 409, (response.status_code, response.text)
            return refused
        answer = response.json()
        assert answer["cost_credits"] == 0, answer
        made = Job(job.account, answer["job_id"], 0, False)
        self.all_jobs.append(made)
        return made

    @rule(who=st.sampled_from(["fiv_a", "fiv_b", "ftm"]))
    @recorded
    def toggle_key(self, who: str) -> None:
        account = self.accounts[who]
        if account.live_disabled:
            self.admin_ok("POST", f"/keys/{account.live_key_id}/enable", {})
        else:
            self.admin_ok("POST", f"/keys/{account.live_key_id}/disable", {"reason": "sim"})
        account.live_disabled = not account.live_disabled

    @precondition(lambda self: KILLS and not self.killed)
    @rule()
    @recorded
    def kill_worker(self) -> None:
        self.deployment.kill_worker()
        self.killed = True

    # payments ---------------------------------------------------------------------------
    @rule(
        target=payments,
        who=st.sampled_from(["fiv_a", "fiv_b"]),
        kind=st.sampled_from(["ok", "processing", "action", "declined"]),
        pack=st.sampled_from(["starter", "growth"]),
        test=st.booleans(),
    )
    @recorded
    def buy(self, who: str, kind: str, pack: str, test: bool) -> Any:
        account = self.accounts[who]
        payment = Payment(account, f"spt_{kind}_{secrets.token_hex(6)}", pack)
        if test and account.test_key is not None:
            response = self.purchase(account.test_key, payment)
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "succeeded", response.json()
            return multiple()  # a test purchase moves nothing: the balance check says so
        if kind == "ok":
            payment.completed_at_stripe = True
        self.all_payments.append(payment)
        self.check_purchase(payment, self.purchase(account.live_key, payment))
        return payment

    @rule(
        target=payments, who=st.sampled_from(["fiv_a", "fiv_b"]), pack=st.sampled_from(["starter", "growth"])
    )
    @recorded
    def stripe_succeeds_before_the_purchase_call(self, who: str, pack: str) -> Payment:
        """Stripe's ``payment_intent.succeeded`` may come before the purchase call has its answer."""
        account = self.accounts[who]
        payment = Payment(account, f"spt_ok_{secrets.token_hex(6)}", pack, completed_at_stripe=True)
        intent = succeeded_intent(
            payment.token, account_id=account.id, pack_slug=pack, amount=PACK_AMOUNT[pack]
        )
        self.outbox.append(StripeEvent(payment, event("payment_intent.succeeded", intent)))
        self.all_payments.append(payment)
        return payment

    def purchase(self, key: str, payment: Payment, pack: str | None = None) -> httpx.Response:
        return self.http.post(
            "/api/v1/credits/purchase",
            json={"pack_slug": pack or payment.pack, "shared_payment_granted_token": payment.token},
            headers={"Authorization": f"Bearer {key}"},
        )

    def check_purchase(self, payment: Payment, response: httpx.Response) -> None:
        account = payment.account
        if account.live_disabled:
            assert response.status_code in (401, 403), ("a disabled key was served", response.text)
            return
        payment.bought = True
        if payment.token.startswith("spt_declined"):
            assert response.status_code == 402, response.text
            return
        assert response.status_code == 200, (response.status_code, response.text)
        answer = response.json()
        if answer["status"] == "succeeded":
            assert answer["credits_added"] == PACK_CREDITS[payment.pack], answer
            payment.granted_seen = True
        else:
            assert answer["credits_added"] == 0, answer

    @rule(payment=payments, other_pack=st.booleans())
    @recorded
    def buy_again(self, payment: Payment, other_pack: bool) -> None:
        """A retried purchase: the same outcome and never a second grant; another pack is 409."""
        if other_pack and payment.bought:
            pack = "scale"
            response = self.purchase(payment.account.live_key, payment, pack)
            if not payment.account.live_disabled:
                assert response.status_code == 409, response.text
            return
        self.check_purchase(payment, self.purchase(payment.account.live_key, payment))

    @rule(payment=payments)
    @recorded
    def stripe_completes(self, payment: Payment) -> None:
        """A processing payment (or one that needed an action) succeeds at Stripe: its event is due."""
        if payment.completed_at_stripe or not payment.bought or payment.token.startswith("spt_declined"):
            return
        payment.completed_at_stripe = True
        intent = dict(self.deployment.stripe.intents[intent_id(payment.token)])
        intent.update(status="succeeded", next_action=None, amount_received=intent["amount"])
        intent["latest_charge"] = "ch_" + intent["id"][3:]
        self.outbox.append(StripeEvent(payment, event("payment_intent.succeeded", intent)))

    @rule(payment=payments, dispute=st.booleans())
    @recorded
    def stripe_takes_back(self, payment: Payment, dispute: bool) -> None:
        """A payment that succeeded at Stripe is refunded in full, or a dispute about it is lost."""
        if not payment.completed_at_stripe:
            return
        known = self.deployment.stripe.intents.get(intent_id(payment.token))
        intent = (
            dict(known)
            if known is not None
            else succeeded_intent(
                payment.token,
                account_id=payment.account.id,
                pack_slug=payment.pack,
                amount=PACK_AMOUNT[payment.pack],
            )
        )
        body = (
            event("charge.dispute.closed", lost_dispute(intent))
            if dispute
            else event("charge.refunded", refunded_charge(intent))
        )
        self.outbox.append(StripeEvent(payment, body))

    @rule(pick=st.integers(0, 50))
    @recorded
    def deliver_event(self, pick: int) -> None:
        """Stripe delivers one of the events it owes, in any order."""
        due = [each for each in self.outbox if not each.delivered]
        if not due:
            return
        chosen = due[pick % len(due)]
        self.deliver(chosen.body)
        chosen.delivered = True
        if chosen.body["type"] == "payment_intent.succeeded":
            chosen.payment.granted_seen = True
        else:
            chosen.payment.reversed_seen = True

    @rule(pick=st.integers(0, 50))
    @recorded
    def redeliver_event(self, pick: int) -> None:
        """Stripe delivers an event it already delivered (at-least-once): nothing more happens."""
        done = [each for each in self.outbox if each.delivered]
        if done:
            self.deliver(done[pick % len(done)].body)

    # checks -----------------------------------------------------------------------------
    @precondition(lambda self: self.since_settle >= SETTLE_EVERY)
    @rule()
    @recorded
    def settle(self) -> None:
        self.since_settle = 0
        self.check_settled()

    @invariant()
    @recorded
    def money_is_consistent(self) -> None:
        Tally.steps += 1
        self.since_settle += 1
        problems = self.loop.run_until_complete(money_violations(self.db))
        assert not problems, "\n".join(problems)

    @recorded
    def teardown(self) -> None:
        try:
            if self.accounts:
                self.check_settled()
        finally:
            self.http.close()
            self.loop.run_until_complete(self.db.close())
            self.loop.close()

    def check_settled(self) -> None:
        """Wait until nothing is in flight, then compare every account with the model, exactly."""
        self.loop.run_until_complete(self.wait_settled())
        Tally.settles += 1
        refunds: dict[str, int] = {name: 0 for name in self.accounts}
        for job in self.all_jobs:
            detail = self.admin_ok("GET", f"/jobs/{job.ref}")
            assert detail["status"] in ("succeeded", "failed"), detail
            assert detail["cost_credits"] == job.cost, (job, detail)
            refundable = (
                job.cancelled
                or job.goodwill
                # the refund rule (engine.execution.should_refund) names codes or reasons
                or (
                    detail["status"] == "failed"
                    and {detail["error_code"], detail["error_message"]} & REFUND_ON
                )
            )
            expected_refund = job.cost if job.live and refundable else 0
            assert detail["credits_refunded"] == expected_refund, (
                f"{job}: {detail['status']} ({detail['error_code']}: {detail['error_message']}),"
                f" refunded {detail['credits_refunded']} of {detail['cost_credits']}, the model expects"
                f" {expected_refund} (cancelled {job.cancelled}, goodwill {job.goodwill})"
            )
            refunds[job.account.name] += expected_refund
        for name, account in self.accounts.items():
            purchases = sum(payment.net for payment in self.all_payments if payment.account is account)
            shown = self.admin_ok("GET", f"/accounts/{account.id}")["credits_remaining"]
            expected = account.expected + refunds[name] + purchases
            assert shown == expected, (
                f"{name} (account {account.id}): balance {shown}, the model expects {expected}"
                f" = {account.expected} (opening, grants, debits) + {refunds[name]} (refunds)"
                f" + {purchases} (purchases net of reversals)"
            )

    async def wait_settled(self) -> None:
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            busy = await self.db.fetchval(
                "SELECT (SELECT count(*) FROM jobs WHERE status NOT IN ('succeeded', 'failed'))"
                " + (SELECT count(*) FROM stripe_events WHERE processed_at IS NULL)"
            )
            if not busy:
                return
            assert time.monotonic() < deadline, f"{busy} jobs or Stripe events still in flight"
            await asyncio.sleep(0.1)


async def test_money_stays_exact(deployment: Deployment, image_host: ImageHost) -> None:
    run_seed = int(os.environ.get("TRYON_SIM_SEED") or secrets.randbits(32))
    print(f"money simulation: seed {run_seed}, {STEPS} steps, worker kills {'on' if KILLS else 'off'}")

    def factory() -> MoneyMachine:
        return MoneyMachine(deployment, image_host)

    seed(run_seed)(factory)
    options = settings(
        max_examples=max(1, STEPS // STEPS_PER_EXAMPLE),
        stateful_step_count=STEPS_PER_EXAMPLE,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
        phases=list(Phase) if SHRINK else [Phase.explicit, Phase.generate],
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request drowns the report
    started = time.monotonic()
    try:
        await asyncio.to_thread(run_state_machine_as_test, factory, settings=options)
    except BaseException as exc:
        for failure in dict.fromkeys(Tally.failures[:5]):
            exc.add_note(f"a step failed with {failure}")
        errors = deployment.errors()
        if errors:
            exc.add_note("the deployment's logs say:\n" + errors)
        exc.add_note(f"money simulation seed {run_seed}: replay with TRYON_SIM_SEED={run_seed}")
        raise
    print(
        f"money simulation: {Tally.steps} steps in {Tally.examples} examples, {Tally.accepted_jobs} jobs,"
        f" {Tally.settles} exact balance checks, {deployment.kills} worker kills,"
        f" {time.monotonic() - started:.1f} s"
    )
    slowest = sorted(Tally.seconds.items(), key=lambda item: -item[1][1])[:6]
    print("  slowest steps: " + ", ".join(f"{name} {n}x {spent:.1f} s" for name, (n, spent) in slowest))
    await assert_money_invariants(deployment.database_url, terminal_timeout=SETTLE_SECONDS)
