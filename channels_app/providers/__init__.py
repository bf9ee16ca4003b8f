"""One module per provider: how its deliveries are verified and read, and its HTTP API.

Each turns the provider's shapes into the items of `providers.common`; the services in
`channels_app.social_services` do the rest the same way for all of them.
"""
