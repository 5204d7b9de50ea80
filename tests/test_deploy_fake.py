"""`slm deploy kuberay`: manifests valid against a JSON Schema of KubeRay's ray.io/v1 fields,
sized from the model's memory estimate; no cluster needed."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from slmkit.catalog.store import Store
from slmkit.scale.kuberay import RAY_OVERHEAD_MIB, Deployment, memory_mib, rayjob, rayservice

SCHEMA = json.loads((Path(__file__).parent / "schemas" / "kuberay_v1.json").read_text())


def mib(q: str) -> int:
    assert q.endswith("Mi")
    return int(q[:-2])


def test_manifests_validate_and_are_sized_from_the_estimate(
    fake_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from slmkit.cli import cli

    monkeypatch.setenv("SLMKIT_HOME", str(fake_store.root))
    out = tmp_path / "k8s"
    args = ["deploy", "kuberay", "--model", "fake-chat", "--out", str(out), "--task", "classify"]
    r = CliRunner().invoke(cli, [*args, "--labels", "spam,ham", "--max-replicas", "3"])
    assert r.exit_code == 0, r.output
    job = yaml.safe_load((out / "rayjob.yaml").read_text())
    svc = yaml.safe_load((out / "rayservice.yaml").read_text())
    for doc in (job, svc):
        jsonschema.validate(doc, SCHEMA)
    assert job["spec"]["entrypoint"].startswith("slm batch classify /data/input.jsonl")
    assert (
        "--ray auto" in job["spec"]["entrypoint"]
        and "--labels spam,ham" in job["spec"]["entrypoint"]
    )
    worker = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    res = worker["template"]["spec"]["containers"][0]["resources"]
    assert res["requests"] == res["limits"] and res["requests"]["cpu"] == "2"
    need = memory_mib(fake_store, "fake-chat", 4096)
    assert mib(res["requests"]["memory"]) == need >= RAY_OVERHEAD_MIB
    group = svc["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    assert (group["minReplicas"], group["maxReplicas"]) == (1, 3)
    serve = yaml.safe_load(svc["spec"]["serveConfigV2"])
    app = serve["applications"][0]
    module, _, attr = app["import_path"].partition(":")
    assert importlib.util.find_spec(module) is not None and attr == "app"
    env = app["runtime_env"]["env_vars"]
    assert json.loads(env["SLMKIT_SERVE_MODELS"]) == ["fake-chat"]
    assert env["SLMKIT_RAY_MAX_REPLICAS"] == "3"
    svc_res = group["template"]["spec"]["containers"][0]["resources"]["requests"]
    # the model's context, the engine's 4096 cells, its seeded and long-request lanes (1 + 2)
    assert mib(svc_res["memory"]) == memory_mib(fake_store, "fake-chat", 5 * 4096)


def test_the_schema_is_not_vacuous(fake_store: Store) -> None:
    """What KubeRay would reject, the schema rejects: non-string rayStartParams, a misspelt
    field, a bad quantity, an upper-case name."""
    d = Deployment("fake-chat", "img:1")
    good = rayjob(d, fake_store, "embed", "in.jsonl", "out.jsonl", [])
    jsonschema.validate(good, SCHEMA)
    jsonschema.validate(rayservice(d, fake_store), SCHEMA)
    bad = []
    for path, value in (
        (("spec", "rayClusterSpec", "headGroupSpec", "rayStartParams", "num-cpus"), 0),
        (("spec", "shutdownAfterJobFinish"), True),
        (("metadata", "name"), "Slmkit"),
    ):
        doc = copy.deepcopy(good)
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        bad.append(doc)
    doc = copy.deepcopy(good)
    worker = doc["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    worker["template"]["spec"]["containers"][0]["resources"]["requests"]["memory"] = "1.5 GB"
    bad.append(doc)
    for doc in bad:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(doc, SCHEMA)
