"""The Ray Serve application a RayService names (`import_path: slmkit.scale.ray_app:app`):
settings from SLMKIT_SERVE_* in the runtime environment; replicas from SLMKIT_RAY_REPLICAS
and SLMKIT_RAY_MAX_REPLICAS (the manifests `slm deploy kuberay` writes set all three)."""

from __future__ import annotations

import os

from slmkit.scale.ray_serve import application
from slmkit.settings import ServerSettings

app = application(
    ServerSettings(),
    replicas=int(os.environ.get("SLMKIT_RAY_REPLICAS", "1")),
    max_replicas=int(os.environ.get("SLMKIT_RAY_MAX_REPLICAS", "0")) or None,
)
