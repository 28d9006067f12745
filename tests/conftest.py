"""Shared test settings: Hypothesis profiles ("ci" when the CI variable is set, else "dev")."""

from __future__ import annotations

import os

from hypothesis import settings

# pytester (tests/test_pytest_plugin.py) is enabled here: pytest_plugins is only allowed in the
# top-level conftest.
pytest_plugins = ["pytester"]

# No deadline: the machines running the tests are shared and their timing is not ours.
settings.register_profile("ci", deadline=None)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
