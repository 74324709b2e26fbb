"""The product suite's fixtures (tiny trained model, fixture images), reused by the lab's tests."""
import importlib.util
import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parents[2] / "tests"
sys.path.insert(0, str(_TESTS))
_spec = importlib.util.spec_from_file_location("product_conftest", _TESTS / "conftest.py")
_mod = importlib.util.module_from_spec(_spec)
sys.modules["product_conftest"] = _mod
_spec.loader.exec_module(_mod)
globals().update({k: v for k, v in vars(_mod).items() if not k.startswith("__")})
