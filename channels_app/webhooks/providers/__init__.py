"""One package per provider: its channel model, how its deliveries are verified and read,
its HTTP API, and its admin. Each turns the provider's shapes into the items of
`channels_app.webhooks.items`; `channels_app.webhooks.services` does the rest the same way
for all of them."""
