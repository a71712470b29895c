"""`kpod-metrics why` and `kpod-metrics top`: the agent's /metrics read twice, a window
apart, turned into what cost each pod its time (docs/why.md).

Both commands are clients of a running agent: they import nothing of the agent's
collectors, so they work against any kpod-metrics agent that is reachable over HTTP.
"""
