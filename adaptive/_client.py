"""The client: one endpoint, a strategy chosen per request, a budget per call."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

from anyio.from_thread import BlockingPortal, start_blocking_portal

from ._batch import BatchItem, BatchReport, as_batch_item, run_many
from ._budget import Budget, as_budget
from ._controller import Controller, ControllerConfig
from ._events import Subscriber
from ._exceptions import ClientClosedError, ConfigError
from ._live import EventCallback, deliver_events
from ._models import Message, as_messages
from ._posterior import ConsistencyPrior
from ._prices import Price
from ._result import Result
from ._state import State
from ._stop import StopRule, stop_rule_from_config
from ._strategy import Sampling, SingleSample, Strategy, Task, check_stop_rule, strategy_from_config
from ._stream import LiveCall, SyncLiveCall
from .endpoints._base import Endpoint
from .ledger._accounts import Account, check_accounts

__all__ = ["Client", "SyncClient"]

Prompt = str | Sequence[Message | Mapping[str, Any]]


class Client:
    """Runs test-time strategies against one endpoint, under per-call budgets.

    Args:
        endpoint: Any `Endpoint` (OpenAIChat, Anthropic, FunctionEndpoint, SimEndpoint...).
        strategy: Default strategy (one sample when None); each call may choose another.
        budget: Default per-call budget (a `Budget` or a dict of its limits); a call's own
            budget replaces it.
        stop: Default stop rule (as for `run`); otherwise the strategy's own default.
        controller: Batch sizing and spending behaviour.
        prior: A consistency prior fitted on your logs (`ConsistencyPrior.fit`); with
            `controller.calibrate` (the default) it keeps learning from this client's calls.
        accounts: Shared budgets (`adaptive.ledger.Account`: a tenant, a key, a global cap)
            that every call of this client is also held against; a call may add its own.

    Example:
        >>> async with Client(endpoint) as client:                       # doctest: +SKIP
        ...     result = await client.run("What is 17 * 23?", strategy=SelfConsistency(),
        ...                               budget=Budget(usd=0.01))
        ...     print(result.answer, result.cost_usd, result.stop_reason)
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        strategy: Strategy | str | Mapping[str, Any] | None = None,
        budget: Budget | Mapping[str, Any] | None = None,
        stop: StopRule | Callable[[State], bool] | str | Mapping[str, Any] | None = None,
        controller: ControllerConfig | None = None,
        prior: ConsistencyPrior | None = None,
        accounts: Sequence[Account] = (),
    ) -> None:
        if not isinstance(endpoint, Endpoint):
            raise ConfigError(
                f"endpoint must implement the Endpoint protocol (name, price, supports_n, "
                f"supports_prefill, supports_raw, async request(), prompt_copies(), async "
                f"aclose()); got {type(endpoint).__name__}"
            )
        self.endpoint = endpoint
        self.strategy = _strategy(strategy) if strategy is not None else SingleSample()
        self.budget = as_budget(budget)
        self.stop = stop_rule_from_config(stop) if stop is not None else None
        if strategy is not None:  # refuse a default pair that could never work, at once
            check_stop_rule(self.strategy, self.stop, given="Client(stop=...)")
        self.controller = Controller(controller, prior)
        self.accounts = check_accounts(accounts)
        self._closed = False

    @property
    def prior(self) -> ConsistencyPrior:
        """The consistency prior the controller's confidence comes from."""
        return self.controller.prior

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    @property
    def closed(self) -> bool:
        """Whether `aclose()` was called; a closed client refuses `run`."""
        return self._closed

    async def aclose(self) -> None:
        """Close the endpoint (endpoints never close an HTTP client they were given).

        `run` raises `ClientClosedError` afterwards; closing twice is fine.
        """
        if self._closed:
            return
        self._closed = True
        await self.endpoint.aclose()

    async def run(
        self,
        prompt: Prompt,
        *,
        strategy: Strategy | str | Mapping[str, Any] | None = None,
        budget: Budget | Mapping[str, Any] | None = None,
        stop: StopRule | Callable[[State], bool] | str | Mapping[str, Any] | None = None,
        seed: int | None = None,
        price: Price | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        on_event: EventCallback | None = None,
        accounts: Sequence[Account] = (),
    ) -> Result:
        """Answer `prompt` with `strategy` under `budget`.

        Args:
            prompt: A question string or a list of chat messages.
            strategy: This call's strategy (an instance, a registered name, or a config dict).
            budget: This call's limits (a `Budget` or a dict such as `{"usd": 0.01}`); spend
                never exceeds them.
            stop: This call's stop rule (a `StopRule`, any callable `State -> bool`, a name or
                a config); default: the strategy's.
            seed: Base seed for reproducible sampling.
            price: Price of the client's endpoint for this call (overrides its own).
            max_tokens: Overrides the strategy's max_tokens for generation requests.
            temperature: Overrides the strategy's temperature.
            on_event: Called with every event of the call as it happens (sync or async; the
                events of `Result.trace`, in order). It runs in a task of its own and never
                changes what is sent or charged; see `adaptive._live` for a slow or failing
                callback.
            accounts: Shared budgets this call is held against besides the client's (a run,
                a tenant); a request one of them refuses is not sent.

        Returns:
            The answer with its receipt: samples, usage, cost, stop reason and trace.

        Raises:
            ClientClosedError: The client was closed (`aclose()`); nothing was sent.
            ConfigError: Bad input (prompt, budget, strategy, unknown price with a dollar
                budget, a stop rule the strategy cannot honour); nothing was spent.
            EndpointError: Every request of a round failed; `error.receipt` holds what was
                spent before.
            BudgetExceededError: A shared account (`error.account`) refused the call's first
                round; nothing was sent.
            LedgerUnavailableError: A shared account's backend cannot be reached; nothing more
                was sent.
        """
        call = self._prepare(
            prompt, strategy, budget, stop, seed, price, max_tokens, temperature, on_event, accounts
        )
        return await self._execute(call)

    def stream(
        self,
        prompt: Prompt,
        *,
        strategy: Strategy | str | Mapping[str, Any] | None = None,
        budget: Budget | Mapping[str, Any] | None = None,
        stop: StopRule | Callable[[State], bool] | str | Mapping[str, Any] | None = None,
        seed: int | None = None,
        price: Price | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        on_event: EventCallback | None = None,
        accounts: Sequence[Account] = (),
    ) -> LiveCall:
        """The iterator form of `run`: the call's events as they happen, then its result.

        `async with client.stream(prompt, ...) as call: async for event in call: ...`, then
        `call.result`. The arguments are `run`'s, checked here (before anything is sent); the
        call starts when the block is entered. The events are exactly `Result.trace`, in
        order. Breaking out of the loop stops watching, not the call: leaving the block waits
        for it, so it sends, charges and answers exactly what `run` would; an exception in
        the block cancels it (requests in flight cancelled and charged) and propagates.
        See `adaptive._stream`.

        Raises:
            ClientClosedError: The client was closed; nothing was sent.
            ConfigError: Bad input, as for `run`.
        """
        call = self._prepare(
            prompt, strategy, budget, stop, seed, price, max_tokens, temperature, on_event, accounts
        )
        return LiveCall(lambda subscriber: self._execute(call, subscriber))

    def _prepare(
        self,
        prompt: Prompt,
        strategy: Strategy | str | Mapping[str, Any] | None,
        budget: Budget | Mapping[str, Any] | None,
        stop: StopRule | Callable[[State], bool] | str | Mapping[str, Any] | None,
        seed: int | None,
        price: Price | None,
        max_tokens: int | None,
        temperature: float | None,
        on_event: EventCallback | None,
        accounts: Sequence[Account],
    ) -> _Prepared:
        """Check a call's arguments and build its task (nothing is sent)."""
        if self._closed:
            raise ClientClosedError(
                "this Client was closed (aclose()): make a new Client (and endpoint) to run more calls"
            )
        messages = as_messages(prompt)
        shared = check_accounts([*self.accounts, *check_accounts(accounts)]) if accounts else self.accounts
        limits = as_budget(budget) if budget is not None else self.budget
        strat = _strategy(strategy) if strategy is not None else self.strategy
        rule = stop_rule_from_config(stop) if stop is not None else self.stop
        # A rule the strategy cannot honour is refused here, before anything is sent.
        check_stop_rule(strat, rule, given="stop=..." if stop is not None else "Client(stop=...)")
        if rule is None:
            rule = strat.default_stop()
        overrides: dict[str, Any] = {}
        if max_tokens is not None:
            overrides["max_tokens"] = max_tokens
        if temperature is not None:
            overrides["temperature"] = temperature
        sampling = Sampling(**overrides) if overrides else None
        question = next((m.content for m in reversed(messages) if m.role == "user"), messages[-1].content)
        task = Task(
            messages=messages,
            question=question,
            endpoint=self.endpoint,
            seed=seed,
            sampling=sampling,
            price=price if price is not None else self.endpoint.price,
        )
        if on_event is not None and not callable(on_event):
            raise ConfigError(
                f"on_event must be a callable taking a TraceEvent, not {type(on_event).__name__}"
            )
        return _Prepared(strat, task, limits, rule, price, on_event, shared)

    async def _execute(self, call: _Prepared, subscriber: Subscriber | None = None) -> Result:
        """Run a prepared call; `subscriber` (the iterator form's queue) sees every event too."""
        mine = (subscriber,) if subscriber is not None else ()
        run = self.controller.run
        if call.on_event is None:
            return await run(
                call.strategy,
                call.task,
                budget=call.budget,
                stop=call.stop,
                price=call.price,
                subscribers=mine,
                accounts=call.accounts,
            )
        # The call's own errors leave after the callback's task is done (never as a group).
        error: Exception | None = None
        async with deliver_events(call.on_event) as live:
            try:
                result = await run(
                    call.strategy,
                    call.task,
                    budget=call.budget,
                    stop=call.stop,
                    price=call.price,
                    subscribers=(live.subscriber, *mine),
                    accounts=call.accounts,
                )
            except Exception as exc:
                error = exc
        if error is not None:
            raise error
        return result

    async def run_many(self, items: Sequence[BatchItem | Mapping[str, Any]], **kwargs: Any) -> BatchReport:
        """Answer many questions under one total budget (`budget_usd=`), samples where they pay.

        Every question gets a first round; further samples go to the question whose next
        sample is expected to gain the most confidence per dollar, until the total is spent or
        every question's stop rule says stop. The total is never exceeded. See
        `adaptive._batch.run_many` for the options (first_round, max_samples, confidence,
        min_gain, concurrency, max_tokens, seed, previous, backend, run_name, on_update).

        Args:
            items: `BatchItem`s or dicts `{"id", "prompt"}` / `{"id", "messages"}`, optional
                `"gold"`.
            **kwargs: `budget_usd` (required) and the options above.

        Example:
            >>> report = await client.run_many(  # doctest: +SKIP
            ...     [{"id": "q1", "prompt": "What is 6 * 7?", "gold": "42"}], budget_usd=0.01)
            >>> report.summary["accuracy"]  # doctest: +SKIP
            1.0
        """
        return await run_many(self, [as_batch_item(i) for i in items], **kwargs)


@dataclasses.dataclass(frozen=True, slots=True)
class _Prepared:
    """A call's checked arguments: what `Client.run` and `Client.stream` then execute."""

    strategy: Strategy
    task: Task
    budget: Budget | None
    stop: StopRule | None
    price: Price | None
    on_event: EventCallback | None
    accounts: tuple[Account, ...] = ()


def _strategy(s: Strategy | str | Mapping[str, Any]) -> Strategy:
    if isinstance(s, str | Mapping):
        return strategy_from_config(s)
    if isinstance(s, type):  # the class passes the protocol check, but its methods are unbound
        raise ConfigError(
            f"strategy must be an instance, not the class: pass {s.__name__}(...), not {s.__name__}"
        )
    if not isinstance(s, Strategy):
        raise ConfigError(
            f"strategy must implement the Strategy protocol (name, start(task), default_stop()); "
            f"got {type(s).__name__}"
        )
    return s


class SyncClient(AbstractContextManager["SyncClient"]):
    """A blocking wrapper of `Client` for scripts and notebooks.

    One event loop runs in a background thread for the client's lifetime, so connections are
    reused across calls. Use it as a context manager, or call `close()`.

    Example:
        >>> with SyncClient(endpoint) as client:                          # doctest: +SKIP
        ...     print(client.run("2 + 2?", budget=Budget(usd=0.001)).answer)
    """

    def __init__(self, endpoint: Endpoint, **kwargs: Any) -> None:
        # The client is made first: a bad argument must not leave a thread running.
        self.client = Client(endpoint, **kwargs)
        self._cm = start_blocking_portal()
        self._portal: BlockingPortal | None = self._cm.__enter__()

    @property
    def closed(self) -> bool:
        """Whether `close()` was called; a closed client refuses `run`."""
        return self._portal is None

    def run(self, prompt: Prompt, **kwargs: Any) -> Result:
        """Blocking `Client.run`.

        Raises:
            ClientClosedError: The client was closed (`close()`); nothing was sent.
        """
        portal = self._portal
        if portal is None:
            raise ClientClosedError(
                "this SyncClient was closed (close()): make a new SyncClient to run more calls"
            )
        return portal.call(lambda: self.client.run(prompt, **kwargs))

    def stream(self, prompt: Prompt, **kwargs: Any) -> SyncLiveCall:
        """Blocking `Client.stream`: `with client.stream(...) as call: for event in call: ...`.

        Raises:
            ClientClosedError: The client was closed (`close()`); nothing was sent.
        """
        portal = self._portal
        if portal is None:
            raise ClientClosedError(
                "this SyncClient was closed (close()): make a new SyncClient to run more calls"
            )
        return SyncLiveCall(portal, self.client.stream(prompt, **kwargs))

    def close(self) -> None:
        """Close the endpoint and stop the background event loop; closing twice is fine."""
        portal, self._portal = self._portal, None
        if portal is not None:
            try:
                portal.call(self.client.aclose)
            finally:
                self._cm.__exit__(None, None, None)

    def __exit__(self, *exc: object) -> None:
        self.close()
