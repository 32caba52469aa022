"""The client side of `sizzle`: an API client and the commands that use it (login, tiers,
models, up, start, ps, stop, balance), for power users of a Sizzle server."""
