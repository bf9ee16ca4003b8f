"""Break-glass: time-boxed access to a conversation outside one's segment (docs/breakglass.md)."""
