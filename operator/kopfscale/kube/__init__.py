"""The shared Kubernetes layer of both controllers.

- :mod:`transport` — the one API transport (raw JSON, a request timeout on every call);
- :mod:`errors` — its one error type, :class:`ApiError`;
- :mod:`indexes` — reads from kopf's indexes with our own recent writes on top;
- :mod:`children` — the owned-child writer (create / conditional patch / conflict);
- :mod:`status` — the status writer (patch only what changed);
- :mod:`ownership` — the managed-by label and controller owner references;
- :mod:`backoff` — the one retry backoff;
- :mod:`config` — where the API server is, loaded once.

Controllers pass in what is theirs (trim functions, manifests, their difference rules).
"""

from kopfscale.kube.backoff import backoff
from kopfscale.kube.config import reset
from kopfscale.kube.errors import ApiError
from kopfscale.kube.transport import REQUEST_TIMEOUT, Transport, path, transport

__all__ = ["REQUEST_TIMEOUT", "ApiError", "Transport", "backoff", "path", "reset", "transport"]
