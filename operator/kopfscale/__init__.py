"""kopfscale: a kopf operator for Greeter web apps and ScaledApp autoscaling.

The identity of our custom resources, defined once (the CRDs in ``crds/`` say the same).
"""

GROUP = "kopfscale.dev"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
GREETERS = "greeters"
SCALEDAPPS = "scaledapps"

__all__ = ["API_VERSION", "GREETERS", "GROUP", "SCALEDAPPS", "VERSION"]
