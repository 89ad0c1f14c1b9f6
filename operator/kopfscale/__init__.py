"""kopfscale: a kopf operator for Greeter web apps and ScaledApp autoscaling."""

GROUP = "kopfscale.dev"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"

__all__ = ["API_VERSION", "GROUP", "VERSION"]
