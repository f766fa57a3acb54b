"""FiftyOne finds the plugin in a plugins folder and registers every operator it lists.

FiftyOne only logs registration errors, so the test lists what was registered (in a fresh
process, like the App's server) and compares it with the manifest.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import python_subprocess_env

REPO = Path(__file__).resolve().parents[2]
PLUGIN = "@alc/active-label-correction"

LISTING = r"""
import importlib.util, json, sys
import fiftyone.operators as foo
import fiftyone.plugins as fop
from fiftyone.plugins.context import build_plugin_contexts

out = {
    "plugins": {p.name: p.directory for p in fop.list_plugins(enabled="all")},
    "operators": [op.uri for op in foo.list_operators(enabled="all", builtin=False)],
    "errors": {c.name: c.errors for c in build_plugin_contexts(enabled="all") if c.errors},
    "heavy_imports": [m for m in ("torch", "alc_fiftyone.steps.ranking") if m in sys.modules],
}

# every class the entry point registers, whether or not the manifest lists it
spec = importlib.util.spec_from_file_location("alc_plugin_probe", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)

class Collect:
    names = []
    def register(self, cls):
        self.names.append(cls().name)

module.register(Collect())
out["defined"] = Collect.names
print(json.dumps(out))
"""


def test_plugin_and_every_operator_are_registered(tmp_path):
    plugins_dir = tmp_path / "plugins"
    plugins_dir.mkdir()
    (plugins_dir / "alc-fiftyone").symlink_to(REPO, target_is_directory=True)
    env = python_subprocess_env()
    env["FIFTYONE_PLUGINS_DIR"] = str(plugins_dir)

    proc = subprocess.run(
        [sys.executable, "-c", LISTING, str(REPO / "__init__.py")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout.strip().splitlines()[-1])

    assert PLUGIN in found["plugins"], found["plugins"]
    assert found["errors"] == {}, "\n".join(e for errs in found["errors"].values() for e in errs)

    manifest = yaml.safe_load((REPO / "fiftyone.yml").read_text())
    listed = manifest["operators"] + manifest["panels"]
    assert listed, "the manifest lists no operators"
    registered = sorted(uri for uri in found["operators"] if uri.startswith(PLUGIN + "/"))
    assert registered == sorted(f"{PLUGIN}/{name}" for name in listed)
    # an operator missing from the manifest would be dropped silently by FiftyOne
    assert sorted(found["defined"]) == sorted(listed)
    # registering at App start must not load the library's heavy parts
    assert found["heavy_imports"] == []


def test_manifest_names_the_plugin():
    manifest = yaml.safe_load((REPO / "fiftyone.yml").read_text())
    assert manifest["name"] == PLUGIN
    assert manifest["version"]
    assert manifest["fiftyone"]["version"].startswith(">=")
    assert set(manifest["operators"]) == {
        "compute_superpixels",
        "rank_superpixels",
        "simulate",
        "export_masks",
        "save_revised_version",
        "generate_pseudo_labels",
        "compute_sam_superpixels",
        "merge_ranking",
        "audit_report",
    }
