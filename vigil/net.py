"""Addresses and connections every service treats alike.

One place decides how a URL is printed, whether an address is this machine,
and how an MQTT client connects (credentials, TLS), so `vigil doctor` checks
the broker exactly the way ingest then uses it.
"""

from __future__ import annotations

import ipaddress
import ssl
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

    from vigil.config import MqttSettings


def redact_url(url: str, *, keep_user: bool = True) -> str:
    """A URL safe to print or log: the password shown as ``***``, query and fragment left out.

    The query goes too, since InfluxDB 1.x takes credentials there (``?u=…&p=…``).
    Without ``keep_user`` the user name goes as well, for messages that name
    the user in words where it matters.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (parsing the port is what validates it)
    except ValueError:  # not a URL: show its scheme only
        return url.split("://", 1)[0] + "://***"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        if not keep_user:
            netloc = hostport
        elif has_password:
            netloc = f"{user}:***@{hostport}"
        else:
            netloc = f"{user}@{hostport}"
    return f"{parts.scheme}://{netloc}{parts.path}"


def is_loopback_host(host: str) -> bool:
    """Whether a host name or address is this machine: ``localhost``, 127.0.0.0/8 or ``::1``."""
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str) -> bool:
    return is_loopback_host(urlsplit(url).hostname or "")


def mqtt_client(
    settings: MqttSettings,
    client_id: str,
    *,
    client_class: type[mqtt.Client] | None = None,
    **options: Any,
) -> mqtt.Client:
    """An MQTT 5 client (callback API 2) with the settings' credentials and TLS.

    ``options`` go to the client's constructor (``manual_ack``, for one).
    TLS is on when a CA or a client certificate is configured, and always
    verifies the broker's certificate.
    """
    import paho.mqtt.client as mqtt

    cls = client_class or mqtt.Client
    client = cls(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                 protocol=mqtt.MQTTv5, **options)
    if settings.username:
        password = settings.password.get_secret_value() if settings.password else None
        client.username_pw_set(settings.username, password)
    if settings.tls_ca or settings.tls_cert:
        client.tls_set(
            ca_certs=str(settings.tls_ca) if settings.tls_ca else None,
            certfile=str(settings.tls_cert) if settings.tls_cert else None,
            keyfile=str(settings.tls_key) if settings.tls_key else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    return client
