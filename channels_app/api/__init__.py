"""The generic API channel: an integration of the customer's own pushes its customers'
messages in with a scoped token, and receives the agents' replies as signed webhooks. It is
a webhook provider like any other (channels_app.webhooks.contract), registered in one line."""
