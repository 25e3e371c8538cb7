"""Who is calling: password sign-in, sessions and access tokens, API tokens, sign-in throttling."""
