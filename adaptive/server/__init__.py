"""The OpenAI-compatible proxy server behind `adaptive serve` (install `adaptive-ttc[server]`).

Any OpenAI client talks to it unchanged; each request is one `Client.run` on the upstream,
with a strategy and budget chosen by the model name (`"adaptive/<model>"`, a configured
alias) or the `adaptive` extension field, and the answer carries its receipt. See the README's
"Proxy server" section.
"""

from ._app import create_app
from ._config import AliasConfig, LedgerConfig, LimitsConfig, ServerConfig, TenantConfig, UpstreamConfig
from ._errors import APIError
from ._serve import RunningProxy, run_proxy, start_proxy
from ._tenants import TenantAccounts

__all__ = [
    "APIError",
    "AliasConfig",
    "LedgerConfig",
    "LimitsConfig",
    "RunningProxy",
    "ServerConfig",
    "TenantAccounts",
    "TenantConfig",
    "UpstreamConfig",
    "create_app",
    "run_proxy",
    "start_proxy",
]
