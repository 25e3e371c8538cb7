"""The scheduled jobs run by `vigil jobs`: scoring, ticket rules, the desk's own jobs."""
