"""Wheel build hook: the dashboard is built from web/ (scripts/build-dashboard) and the embedding
model's weights are fetched (scripts/fetch-model, pinned by sha256); both go into the wheel, though
git ignores them, so an installed `mf serve` needs no Node.js and `mf ask` no network at run time."""

import subprocess
import sys
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class DashboardBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version, build_data):
        if self.target_name != "wheel":
            return
        root = Path(self.root)
        # the model: an editable install reads it from the source tree, a wheel carries it
        if (root / "scripts" / "fetch-model").is_file():
            subprocess.run([sys.executable, str(root / "scripts" / "fetch-model")], check=True)
        build_data["artifacts"].append("metaforge/knowledge/model/")
        if version == "editable":  # the dashboard of an editable install: scripts/setup builds it
            return
        if (root / "web").is_dir():
            subprocess.run([sys.executable, str(root / "scripts" / "build-dashboard")], check=True)
        if not (root / "metaforge" / "serve" / "static" / "index.html").is_file():
            raise RuntimeError("the dashboard is not built and web/ is not here to build it")
        build_data["artifacts"].append("metaforge/serve/static/")
