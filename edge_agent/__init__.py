"""The on-device agent: standard library and paho-mqtt only."""


class EdgeAgentError(Exception):
    """Base of the errors the agent and its protocol raise on purpose."""
