"""Fault injection for adaptive's HTTP endpoints (issue #9, item 12).

- `faults.plans`: the registry of named faults and the seeded trial generator.
- `faults.bill`: what the fault server would charge, request by request.
- `faults.server`: the fault server (Starlette on uvicorn, in a background thread on 127.0.0.1)
  speaking OpenAI chat / legacy completions and Anthropic Messages, streamed or not.

`tests/test_faults.py` drives thousands of seeded trials through them.
"""
