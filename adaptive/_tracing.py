"""OpenTelemetry spans for every call: the optional extra `adaptive[otel]` (opentelemetry-api).

Tracing is one more subscriber on the call's `Recorder` (like the logger), so the spans are
built from the same events as `Result.trace`:

* one span per call, named ``adaptive.run <strategy>`` (kind INTERNAL), a child of the
  caller's current span, with `adaptive.strategy`, `adaptive.endpoint`, the limits set
  (`adaptive.budget.usd` / `.tokens` / `.samples` / `.seconds`) and, at the end,
  `adaptive.spent_usd`, `adaptive.samples` (completions received, verifier calls included),
  `adaptive.generated`, `adaptive.rounds`, `adaptive.stop_reason`, `adaptive.stop_rule`,
  `adaptive.confidence` and the booked tokens (`adaptive.usage.input_tokens` / `.output_tokens`);
  refusals and overruns are span events on it (`adaptive.refuse`, `adaptive.overrun`);
* one child span per model request (kind CLIENT), from its "send" event to its "done",
  "cancel" or "error", named ``{gen_ai.operation.name} {gen_ai.request.model}`` after the
  GenAI semantic conventions, with `gen_ai.operation.name` ("chat" / "text_completion"),
  `gen_ai.provider.name` (when the endpoint names a provider), `gen_ai.request.model`,
  `gen_ai.request.max_tokens`, `gen_ai.request.temperature`, `gen_ai.request.seed`,
  `gen_ai.request.choice.count`
  (n, when not 1), `gen_ai.response.model`, `gen_ai.usage.input_tokens`,
  `gen_ai.usage.output_tokens` and `gen_ai.response.finish_reasons`, plus `adaptive.purpose`,
  `adaptive.request_id`, `adaptive.reserved_usd`, `adaptive.reserved_tokens`, `adaptive.usd`
  (booked) and `adaptive.estimated`. An attempt the endpoint retried is a `retry` span event
  on its request's span (the span covers every attempt, as the conventions ask).

Span start and end times are the events' own times, so a span shows the request's real
interval. OpenTelemetry has no "cancelled" status: a request the controller cancelled ends
with status ERROR, description "cancelled" and `error.type` "cancelled" (still charged:
`adaptive.usd`); a failed request ends with status ERROR, `error.type` the exception's class
name and its (credential-free) message as the description. A call that raises ends its span
the same way (`error.type` "cancelled" when the caller cancelled it).

Cost: nothing is imported when `adaptive` is imported. The first call tries to import
`opentelemetry.trace` once; without it (or with only the API and no SDK tracer provider set,
where every span would be a no-op) a call costs one check and builds nothing. The tracer
provider is the global one (`opentelemetry.trace.set_tracer_provider`), read at each call.
"""

from __future__ import annotations

import logging
from typing import Any

from ._budget import Budget
from ._events import Recorder
from ._result import Result, TraceEvent

__all__ = ["CallSpans", "start_call", "tracer"]

logger = logging.getLogger("adaptive")

#: `opentelemetry.trace` once imported; False when it cannot be; None before the first call.
_otel: Any = None

_Attrs = dict[str, str | bool | int | float | list[str]]


def _api() -> Any:
    """`opentelemetry.trace`, or None when it is not installed (tried once, then cached)."""
    global _otel
    if _otel is None:
        try:
            from opentelemetry import trace
        except ImportError:
            _otel = False
        else:
            _otel = trace
    return _otel or None


def tracer(name: str) -> tuple[Any, Any] | None:
    """`(opentelemetry.trace, a tracer called name)`, or None when nothing would record spans.

    None when opentelemetry is not installed, or when no SDK tracer provider is configured
    (the API's default proxy or an explicit no-op provider): then nothing is built at all.
    """
    trace = _api()
    if trace is None:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    from . import __version__

    return trace, provider.get_tracer(name, __version__)


def start_call(strategy: str, budget: Budget | None, endpoint: str, recorder: Recorder) -> CallSpans | None:
    """The spans of one call, subscribed to its recorder; None when nothing would record any (`tracer`)."""
    found = tracer("adaptive")
    if found is None:
        return None
    trace, call_tracer = found
    spans = CallSpans(trace, call_tracer, strategy, budget, endpoint, recorder)
    recorder.subscribe(spans.subscriber)
    return spans


def _clean(attrs: dict[str, Any]) -> _Attrs:
    """Attributes without None values (OpenTelemetry refuses them)."""
    return {k: v for k, v in attrs.items() if v is not None}


class CallSpans:
    """The call span and the open request spans of one call.

    Args:
        trace: The `opentelemetry.trace` module.
        tracer: The tracer spans are made with.
        strategy / budget / endpoint: What the call span says of the call.
        recorder: The call's recorder (its start time anchors every event's time).
    """

    def __init__(
        self, trace: Any, tracer: Any, strategy: str, budget: Budget | None, endpoint: str, recorder: Recorder
    ) -> None:
        self.trace = trace
        self.tracer = tracer
        self.t0_ns = recorder.started_ns
        attrs: dict[str, Any] = {"adaptive.strategy": strategy, "adaptive.endpoint": endpoint}
        if budget is not None:
            for dim in ("usd", "tokens", "samples", "seconds"):
                attrs[f"adaptive.budget.{dim}"] = getattr(budget, dim)
        # No context given: the caller's current span is the parent.
        self.span = tracer.start_span(
            f"adaptive.run {strategy}",
            kind=trace.SpanKind.INTERNAL,
            attributes=_clean(attrs),
            start_time=self.t0_ns,
        )
        self.context = trace.set_span_in_context(self.span)
        self.requests: dict[int, Any] = {}
        self.broken = False

    def _ns(self, event: TraceEvent) -> int:
        return self.t0_ns + round(event.t * 1e9)

    def subscriber(self, event: TraceEvent) -> None:
        """Turn one event into span work; a failure here is logged once and never ends the call."""
        if self.broken:
            return
        try:
            self._on(event)
        except Exception:
            self.broken = True
            logger.warning(
                "tracing: could not record a %r event; no more spans for this call", event.kind, exc_info=True
            )

    def _on(self, event: TraceEvent) -> None:
        data, kind = event.data, event.kind
        if kind == "send":
            model = data.get("model")
            operation = data.get("operation", "chat")
            n = data.get("n", 1)
            attrs = {
                "gen_ai.operation.name": operation,
                "gen_ai.provider.name": data.get("provider"),
                "gen_ai.request.model": model,
                "gen_ai.request.max_tokens": data.get("max_tokens"),
                "gen_ai.request.temperature": data.get("temperature"),
                "gen_ai.request.seed": data.get("seed"),
                "gen_ai.request.choice.count": n if n != 1 else None,
                "adaptive.endpoint": data.get("endpoint"),
                "adaptive.purpose": data.get("purpose"),
                "adaptive.request_id": data.get("request_id"),
                "adaptive.reserved_usd": data.get("usd"),
                "adaptive.reserved_tokens": data.get("tokens"),
            }
            self.requests[data["request_id"]] = self.tracer.start_span(
                f"{operation} {model}" if model else operation,
                context=self.context,
                kind=self.trace.SpanKind.CLIENT,
                attributes=_clean(attrs),
                start_time=self._ns(event),
            )
        elif kind in ("done", "cancel", "error"):
            span = self.requests.get(data.get("request_id", -1))
            if span is None:
                return
            booked = {"adaptive.usd": data.get("usd"), "adaptive.estimated": data.get("estimated")}
            if kind == "error" and data.get("retried"):
                attrs = {"error.type": data.get("error"), "adaptive.message": data.get("message"), **booked}
                span.add_event("retry", attributes=_clean(attrs), timestamp=self._ns(event))
                return
            del self.requests[data["request_id"]]
            attrs = {
                **booked,
                "gen_ai.usage.input_tokens": data.get("input_tokens"),
                "gen_ai.usage.output_tokens": data.get("output_tokens"),
            }
            status = self.trace.Status
            if kind == "done":
                attrs["gen_ai.response.model"] = data.get("model")
                attrs["gen_ai.response.finish_reasons"] = list(data.get("finish_reasons", ()))
                attrs["adaptive.completions"] = data.get("completions")
            elif kind == "cancel":
                attrs["error.type"] = "cancelled"
                span.set_status(status(self.trace.StatusCode.ERROR, "cancelled"))
            else:
                attrs["error.type"] = data.get("error")
                span.set_status(status(self.trace.StatusCode.ERROR, data.get("message") or data.get("error")))
            span.set_attributes(_clean(attrs))
            span.end(end_time=self._ns(event))
        elif kind in ("refuse", "overrun"):
            attrs = {f"adaptive.{k}": v for k, v in data.items() if isinstance(v, str | int | float | bool)}
            self.span.add_event(f"adaptive.{kind}", attributes=attrs, timestamp=self._ns(event))
        elif kind == "stop":
            self.span.set_attributes(
                _clean({"adaptive.stop_reason": data.get("reason"), "adaptive.stop_rule": data.get("rule")})
            )

    def _close_requests(self, description: str) -> None:
        """End request spans left open (a call cut off before their end was recorded)."""
        for span in self.requests.values():
            span.set_attribute("error.type", description)
            span.set_status(self.trace.Status(self.trace.StatusCode.ERROR, description))
            span.end()
        self.requests.clear()

    def _summary(self, result: Result) -> None:
        attrs = {
            "adaptive.spent_usd": result.cost_usd,
            "adaptive.samples": len(result.samples),
            "adaptive.generated": result.generated,
            "adaptive.rounds": result.rounds,
            "adaptive.stop_reason": result.stop_reason,
            "adaptive.stop_rule": result.stop.rule if result.stop is not None and result.stop.rule else None,
            "adaptive.confidence": result.confidence,
            "adaptive.usage.input_tokens": result.usage.prompt_tokens,
            "adaptive.usage.output_tokens": result.usage.completion_tokens,
            "adaptive.overruns": len(result.overruns) or None,
        }
        self.span.set_attributes(_clean(attrs))

    def finish(self, result: Result) -> None:
        """End the call span with the call's figures."""
        try:
            self._close_requests("unfinished")
            self._summary(result)
            self.span.end(end_time=self.t0_ns + round(result.elapsed_s * 1e9))
        except Exception:
            logger.warning("tracing: could not end the call span", exc_info=True)

    def fail(self, error: BaseException, cancelled: bool) -> None:
        """End the call span for a call that raised (`cancelled`: the caller cancelled it)."""
        try:
            kind = "cancelled" if cancelled else type(error).__name__
            self._close_requests("cancelled" if cancelled else "unfinished")
            receipt = getattr(error, "receipt", None)
            if isinstance(receipt, Result):
                self._summary(receipt)
            self.span.set_attribute("error.type", kind)
            description = "cancelled" if cancelled else str(error)[:300] or kind
            self.span.set_status(self.trace.Status(self.trace.StatusCode.ERROR, description))
            self.span.end()
        except Exception:
            logger.warning("tracing: could not end the call span", exc_info=True)
