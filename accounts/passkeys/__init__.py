"""Passkeys (WebAuthn) as a second factor and as the step-up factor, verified with py_webauthn."""
