"""The e2e ``sandbox`` fixture of tests/e2e/conftest.py, re-exported for this directory.

tests/e2e/conftest.py is loaded under its own module name (pytest loads it only when
tests/e2e is collected); its ``sandbox`` module (sandbox.py) is shared.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

E2E_CONFTEST = Path(__file__).resolve().parents[1] / "e2e" / "conftest.py"


def _load_e2e_conftest() -> object:
    name = "ipamguard_tests_e2e_conftest"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, E2E_CONFTEST)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)  # puts tests/e2e on sys.path (import sandbox)
    return module


_e2e = _load_e2e_conftest()
sandbox = _e2e.sandbox  # type: ignore[attr-defined]
