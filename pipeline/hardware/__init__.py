"""Hardware facts (collected once) and the decisions derived from them (pure functions)."""
