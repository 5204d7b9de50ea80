"""`slm serve --ray`: the slmkit HTTP app (same routes, keys, limits and /metrics) as a Ray
Serve deployment, with a fixed number of replicas or autoscaling between two bounds.

Each replica builds its own `ModelProvider` and app from the same `ServerSettings` (Ray
Serve's ingress builder runs on the replica), so it loads its models once and batches its
own requests; Ray Serve's proxy spreads requests over replicas. /metrics answers for the
replica that took the request (Prometheus should scrape Ray's metrics for the sum).

`slmkit.scale.ray_app:app` is the import path a RayService's serveConfigV2 names (it reads
its settings from SLMKIT_SERVE_* in the runtime environment).
"""

from __future__ import annotations

from typing import Any

from slmkit.settings import ServerSettings


def build_app(settings: ServerSettings) -> Any:
    """The ASGI app one replica serves (runs on the replica)."""
    from slmkit import offline
    from slmkit.serve import ModelProvider, create_app

    if offline.wanted():
        offline.enable()
    return create_app(settings, ModelProvider.from_settings(settings))


def application(
    settings: ServerSettings,
    *,
    replicas: int = 1,
    max_replicas: int | None = None,
    cpus_per_replica: float = 1.0,
) -> Any:
    """A Ray Serve application: `replicas` replicas, or autoscaling from `replicas` up to
    `max_replicas` with each replica aiming at `settings.parallel` requests in flight."""
    from ray import serve

    opts: dict[str, Any] = {
        "name": "slmkit",
        "ray_actor_options": {"num_cpus": cpus_per_replica},
        "max_ongoing_requests": settings.parallel + settings.max_waiting,
    }
    if max_replicas and max_replicas > replicas:
        opts["autoscaling_config"] = {
            "min_replicas": replicas,
            "max_replicas": max_replicas,
            "target_ongoing_requests": settings.parallel,
        }
    else:
        opts["num_replicas"] = replicas
    ingress = serve.ingress(lambda: build_app(settings))()
    return serve.deployment(**opts)(ingress).bind()


def run(
    settings: ServerSettings,
    address: str,
    *,
    replicas: int = 1,
    max_replicas: int | None = None,
    blocking: bool = True,
) -> None:
    """Start (or join) Ray, start Serve's proxy on settings.host:port, run the app."""
    from ray import serve

    from slmkit.scale.ray_job import import_ray

    ray = import_ray()
    if not ray.is_initialized():
        if address == "local":
            ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False)
        else:
            from slmkit import offline

            offline.disable()  # the user asked for this cluster
            ray.init(address=address, log_to_driver=False)
    serve.start(http_options={"host": settings.host, "port": settings.port})
    app = application(settings, replicas=replicas, max_replicas=max_replicas)
    serve.run(app, name="slmkit", route_prefix="/", blocking=blocking)
